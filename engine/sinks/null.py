"""Nothing out: counts the frames (benchmarks, tests, a show that only drives other tools)."""

from __future__ import annotations


class Sink:
    def __init__(self):
        self.count = 0
        self.last_index = -1

    def write(self, rgb, tick) -> None:
        self.count += 1
        self.last_index = tick.index

    def close(self) -> None:
        pass
