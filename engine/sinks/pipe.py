"""Raw frames into another program's standard input: rgb24, top row first, width*height*3 bytes a frame.

`command` is a list of arguments; `{width}`, `{height}` and `{fps}` in it are replaced, so an FFmpeg or
GStreamer command line can be told the frame format (docs/sinks.md has examples). A receiver that stops
reading fills the pipe and blocks `write`: in a live run that stalls only this sink's thread, and its
frames are dropped and counted. A receiver that exits ends the sink with a one-line message.
"""

from __future__ import annotations

import subprocess

import numpy as np

from engine.sinks import Unavailable


class Writer:
    def __init__(self, command: list[str], size: tuple[int, int], fps: float):
        if not isinstance(command, list) or not command or not all(isinstance(a, str | int | float) for a in command):
            raise ValueError(f"pipe: command must be a list of arguments, got {command!r}")
        self.size = tuple(size)
        values = {"{width}": str(size[0]), "{height}": str(size[1]), "{fps}": f"{fps:g}"}
        self.args = [str(a) for a in command]
        for key, value in values.items():
            self.args = [a.replace(key, value) for a in self.args]
        try:
            self.process = subprocess.Popen(self.args, stdin=subprocess.PIPE)
        except OSError as e:
            raise Unavailable(f"pipe: cannot start {self.args[0]!r}: {e.strerror or e}") from None
        self.count = 0

    def write(self, rgb: np.ndarray, tick) -> None:
        if rgb.shape != (self.size[1], self.size[0], 3):
            raise ValueError(f"pipe: frames must be {self.size[0]}x{self.size[1]}, got {rgb.shape[1]}x{rgb.shape[0]}")
        try:
            self.process.stdin.write(np.ascontiguousarray(rgb).data)
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):  # ValueError: the pipe was closed by abort()
            raise Unavailable(f"pipe: {self.args[0]} stopped reading (exit status {self.process.poll()})") from None
        self.count += 1

    def abort(self) -> None:
        """The receiver is stuck and the run is ending: end it, which frees a write blocked on the pipe."""
        self.process.kill()

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
