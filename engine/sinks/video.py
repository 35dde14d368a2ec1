"""H.264 video files through PyAV (FFmpeg's libraries, shipped in the `av` wheel).

PyAV rather than a pipe to an ffmpeg binary: frames go in as arrays with explicit timestamps (frame
index / fps), so a render is frame-exact by construction, and the same library decodes files back in
the tests. x264 is deterministic for fixed settings, so the same render twice gives the same frames.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class Writer:
    def __init__(self, path: str | Path, fps: float, crf: int = 18, preset: str = "medium"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rate = Fraction(fps).limit_denominator(1001)
        self.options = {"crf": str(crf), "preset": preset}
        self._container = None
        self._stream = None
        self.count = 0

    def _open(self, width: int, height: int) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"{self.path}: H.264 needs an even width and height, got {width}x{height}")
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream("libx264", rate=self.rate, options=self.options)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = 1 / self.rate

    def write(self, rgb: np.ndarray, tick) -> None:
        if self._container is None:
            self._open(rgb.shape[1], rgb.shape[0])
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.count  # in units of 1/fps: frame i is shown at i / fps
        frame.time_base = 1 / self.rate
        self._container.mux(self._stream.encode(frame))
        self.count += 1

    def close(self) -> None:
        if self._container is not None:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            self._container = None


def read_frames(path: str | Path) -> list[np.ndarray]:
    """Every frame of a video as HxWx3 uint8 (for tests and tools)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def mux_audio(video: str | Path, audio: str | Path) -> None:
    """Add `audio` (any file FFmpeg reads) to `video` as AAC, cut to the video's length: the soundtrack
    of a render driven by that audio, so a music video comes out of one command."""
    video = Path(video)
    tmp = video.with_name(f".{video.stem}.muxing{video.suffix}")
    with av.open(str(video)) as vin, av.open(str(audio)) as ain, av.open(str(tmp), "w") as out:
        v_in, a_in = vin.streams.video[0], ain.streams.audio[0]
        v_out = out.add_stream_from_template(v_in)
        rate = a_in.rate or 48000
        a_out = out.add_stream("aac", rate=rate)
        a_out.layout = "stereo"
        seconds = v_in.frames / float(v_in.average_rate)
        for packet in vin.demux(v_in):
            if packet.dts is not None:
                packet.stream = v_out
                out.mux(packet)
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        for frame in ain.decode(a_in):
            if frame.time is not None and frame.time >= seconds:
                break
            for resampled in resampler.resample(frame):
                out.mux(a_out.encode(resampled))
        out.mux(a_out.encode(None))
    tmp.replace(video)
