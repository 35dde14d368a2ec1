"""Clocks: the only place that reads the wall clock. Everything else is handed a `Tick`.

`FixedStep` counts frames (offline renders, tests, lockstep headless runs): tick i is at i / fps.
`Realtime` follows the monotonic clock, with pause, for the live window. Both may start later in the show
(`start`: show time in seconds), so a restarted kiosk engine picks the show up where it was.
"""

from __future__ import annotations

import time

from engine.frame import Tick


class FixedStep:
    def __init__(self, fps: float, start_frame: int = 0):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self.index = start_frame

    def tick(self) -> Tick:
        tick = Tick(self.index, self.index / self.fps)
        self.index += 1
        return tick

    def at(self, index: int) -> Tick:
        return Tick(index, index / self.fps)


class Realtime:
    def __init__(self, now=time.monotonic, start: float = 0.0):
        self._now = now
        self._start = now() - start  # show time `start` is now
        self._paused_at: float | None = None
        self.index = 0

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def toggle_pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = self._now()
        else:
            self._start += self._now() - self._paused_at
            self._paused_at = None

    def time(self) -> float:
        return (self._paused_at if self._paused_at is not None else self._now()) - self._start

    def tick(self) -> Tick:
        tick = Tick(self.index, self.time())
        self.index += 1
        return tick
