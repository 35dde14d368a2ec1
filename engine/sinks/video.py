"""H.264 video files through PyAV (FFmpeg's libraries, shipped in the `av` wheel).

PyAV rather than a pipe to an ffmpeg binary: frames go in as arrays with explicit timestamps (frame
index / fps), so a render is frame-exact by construction, and the same library decodes files back in
the tests. x264 is deterministic for fixed settings, so the same render twice gives the same frames.

A file is written as `NAME.partial.EXT` (the extension kept, so the muxer picks the format) and renamed
to `NAME.EXT` only by `close()`: a render that is interrupted or fails (a full disk) never leaves a short
or broken file under the name asked for. The partial file is opened when the writer is made, so a folder
that cannot be written fails before any frame is drawn. H.264 in yuv420p needs an even width and height
(`check_size`).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from engine.sinks import make_folder

SUFFIXES = (".mp4", ".mkv", ".mov")


def partial_path(path: str | Path) -> Path:
    """piece.mp4 -> piece.partial.mp4: where a file is written until it is complete."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def even_size(size: tuple[int, int]) -> tuple[int, int]:
    return size[0] + size[0] % 2, size[1] + size[1] % 2


def check_size(size: tuple[int, int], where: str, advice: str = "") -> None:
    """ValueError naming `where` (the option or show key the size came from) for an odd size; `advice`
    says what to do instead (default: the even size next up)."""
    w, h = size
    if w % 2 or h % 2:
        advice = advice or f"try {'x'.join(map(str, even_size(size)))}"
        raise ValueError(f"{where} {w}x{h}: H.264 video (yuv420p) needs an even width and height; {advice}")


class Writer:
    def __init__(self, path: str | Path, fps: float, crf: int = 18, preset: str = "medium",
                 size: tuple[int, int] | None = None):
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.rate = Fraction(fps).limit_denominator(1001)
        self.options = {"crf": str(crf), "preset": preset}
        if size is not None:
            check_size(tuple(size), f"{self.path}: size")
        make_folder(self.path.parent)
        open(self.partial, "wb").close()  # fail fast: FFmpeg itself would open the file at the first frame
        self._container = av.open(str(self.partial), mode="w")
        self._stream = None
        if size is not None:
            self._add_stream(*size)
        self.count = 0

    def _add_stream(self, width: int, height: int) -> None:
        check_size((width, height), f"{self.path}: frames of")
        self._stream = self._container.add_stream("libx264", rate=self.rate, options=self.options)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = 1 / self.rate
        # x264's own threads, stated rather than left to PyAV's defaults (which a new version may change, and with
        # them the bitstream): slice threads, as many as x264 picks for the cores (1.5 a core). Frame threads
        # take ~25% less CPU a frame but make another file from the same frames (docs/performance.md, issue 19).
        self._stream.codec_context.thread_type = "SLICE"
        self._stream.codec_context.thread_count = 0

    def write(self, rgb: np.ndarray, tick) -> None:
        if self._stream is None:
            self._add_stream(rgb.shape[1], rgb.shape[0])
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.count  # in units of 1/fps: frame i is shown at i / fps
        frame.time_base = 1 / self.rate
        self._container.mux(self._stream.encode(frame))
        self.count += 1

    def _finish(self) -> None:
        """Flush the encoder and write the trailer: the partial file is a complete, playable video."""
        container, self._container = self._container, None
        try:
            if self._stream is not None:
                container.mux(self._stream.encode(None))
        finally:
            container.close()

    def close(self) -> None:
        """Finish the file and give it its name. A failure (a full disk) removes the partial file and raises."""
        if self._container is None:
            return
        try:
            self._finish()
        except BaseException:
            self.partial.unlink(missing_ok=True)
            raise
        os.replace(self.partial, self.path)

    def interrupt(self, keep: bool = True) -> Path | None:
        """End the file early without giving it its name: with `keep`, the frames so far stay in the partial
        file, made playable (its path is returned); otherwise, or when it cannot be finished, it is removed."""
        if self._container is not None:
            try:
                self._finish()
            except Exception:  # noqa: BLE001 - what cannot be finished is not worth keeping
                keep = False
        if keep and self.count and self.partial.exists():
            return self.partial
        self.partial.unlink(missing_ok=True)
        return None


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
