"""A network stream for streaming a set: H.264 in MPEG-TS over UDP, SRT or TCP, or FLV over RTMP,
through PyAV (FFmpeg's own protocol and muxer code, in the `av` wheel).

`url` picks the protocol: `udp://239.0.0.1:5004` (or a host's address; OBS, VLC and ffplay open the
same URL), `srt://host:port`, `tcp://host:port`, `rtmp://server/app/key`. Encoding is tuned for low
latency (x264 `ultrafast`, `zerolatency`, no B-frames, a keyframe every `keyframe_seconds` so a
receiver that joins late starts within that time). Timestamps come from show time, so a frame the
live loop drops leaves a gap in time rather than speeding the stream up.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from engine.sinks import Unavailable

FORMATS = {"udp": "mpegts", "srt": "mpegts", "tcp": "mpegts", "rtp": "rtp_mpegts", "rtmp": "flv", "rtmps": "flv"}


class Writer:
    def __init__(self, url: str, size: tuple[int, int], fps: float, bitrate_kbps: int = 4000,
                 keyframe_seconds: float = 1.0, format: str = "", codec: str = "libx264"):
        import av

        scheme = url.split("://", 1)[0] if "://" in url else ""
        fmt = format or FORMATS.get(scheme)
        if fmt is None:
            raise ValueError(f"stream: url must start with one of {', '.join(f'{s}://' for s in FORMATS)}, "
                             f"got {url!r}")
        width, height = size
        if width % 2 or height % 2:
            raise ValueError(f"stream: H.264 needs an even width and height, got {width}x{height}")
        self.url, self.fps = url, fps
        self.rate = Fraction(fps).limit_denominator(1001)
        try:
            self._container = av.open(url, mode="w", format=fmt)
        except (av.error.FFmpegError, OSError) as e:
            raise Unavailable(f"stream: cannot open {url}: {e}") from None
        options = {"preset": "ultrafast", "tune": "zerolatency"} if codec == "libx264" else {}
        self._stream = self._container.add_stream(codec, rate=self.rate, options=options)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        self._stream.bit_rate = int(bitrate_kbps) * 1000
        self._stream.codec_context.gop_size = max(1, round(keyframe_seconds * fps))
        self._stream.codec_context.time_base = 1 / self.rate
        self._t0: float | None = None
        self._last_pts = -1
        self.count = 0

    def write(self, rgb: np.ndarray, tick) -> None:
        import av

        if self._t0 is None:
            self._t0 = tick.t
        pts = max(round((tick.t - self._t0) * self.fps), self._last_pts + 1)  # show time, strictly increasing
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = pts, 1 / self.rate
        try:
            self._container.mux(self._stream.encode(frame))
        except (av.error.FFmpegError, OSError) as e:
            raise Unavailable(f"stream: sending to {self.url} failed: {e}") from None
        self._last_pts = pts
        self.count += 1

    def close(self) -> None:
        if self._container is None:
            return
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
            self._container = None
