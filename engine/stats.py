"""Per-stage time per frame: every stage reports, `--stats` shows, `bench/` measures."""

from __future__ import annotations

import time
from contextlib import contextmanager


class StageTimes:
    def __init__(self, smoothing: float = 0.1):
        self.smoothing = smoothing
        self.mean_ms: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def add(self, stage: str, seconds: float) -> None:
        ms = seconds * 1000
        old = self.mean_ms.get(stage)
        self.mean_ms[stage] = ms if old is None else old + self.smoothing * (ms - old)
        self.count[stage] = self.count.get(stage, 0) + 1

    @contextmanager
    def time(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def summary(self) -> str:
        return "  ".join(f"{k} {v:.1f}ms" for k, v in self.mean_ms.items())
