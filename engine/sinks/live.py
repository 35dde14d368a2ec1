"""Sinks in a live run: each on its own thread behind a short queue, so one slow or stalled receiver
(a network that backs up, a program that stops reading its pipe) never holds the window or the other
sinks. When a sink's queue is full the oldest waiting frame is dropped (the newest is what a live
receiver wants), counted and logged. In lockstep runs (headless, frame-exact) file sinks are `lossless`:
the loop waits for them instead, so a headless render to files keeps every frame.

A sink that fails (its device vanished, its receiver quit) is logged once and switched off; the show
goes on with the others.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("masquerade")

_STOP = object()


@dataclass
class Report:
    written: int
    dropped: int
    error: str | None


class Feed:
    def __init__(self, name: str, sink, depth: int = 2, lossless: bool = False):
        self.name, self.sink, self.lossless = name, sink, lossless
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.written = self.dropped = 0
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, name=f"sink {name}", daemon=True)
        self.thread.start()

    def offer(self, rgb: np.ndarray, tick) -> None:
        """Hand a frame on without waiting (a lossless feed waits for room instead). `rgb` must not be
        changed afterwards: the sink's thread reads it later."""
        if self.error is not None:
            return
        if self.lossless:  # wait for room, but not on a sink whose thread has ended (it failed meanwhile)
            while self.thread.is_alive():
                try:
                    self.queue.put((rgb, tick), timeout=0.1)
                    return
                except queue.Full:
                    continue
            return
        while True:
            try:
                self.queue.put_nowait((rgb, tick))
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()  # the oldest waiting frame makes room for the newest
                except queue.Empty:
                    continue
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    log.warning("%s is not keeping up: %d frames dropped so far", self.name, self.dropped)

    def _run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if item is _STOP:
                    break
                self.sink.write(*item)
                self.written += 1
        except Exception as e:  # noqa: BLE001 - any sink failure ends this sink only, with its reason
            self.error = e
            log.error("%s stopped, the show goes on without it: %s", self.name, e)
        finally:
            try:
                if self.error is not None and hasattr(self.sink, "interrupt"):
                    self.sink.interrupt(keep=False)  # a file that failed half-way is not given its name
                else:
                    self.sink.close()
            except Exception as e:  # noqa: BLE001
                self.error = self.error or e
                log.error("%s did not close cleanly: %s", self.name, e)

    def close(self, timeout: float | None = None) -> Report:
        """Let the sink finish what is queued, then close it: a lossless feed (a file) as long as that takes,
        a live one up to `timeout` (2 s), after which a sink still stuck is aborted (`abort()`, where it has
        one) and left behind."""
        if self.lossless:
            while self.thread.is_alive():  # a sink that failed has stopped taking frames: nothing to wait for
                try:
                    self.queue.put(_STOP, timeout=0.5)
                    break
                except queue.Full:
                    continue
            self.thread.join()
            return self.report()
        timeout = 2.0 if timeout is None else timeout
        while True:
            try:
                self.queue.put_nowait(_STOP)
                break
            except queue.Full:
                if not self.thread.is_alive():
                    break
                try:
                    self.queue.get_nowait()  # stalled: what is still waiting will not be written
                    self.dropped += 1
                except queue.Empty:
                    pass
        self.thread.join(timeout)
        if self.thread.is_alive() and hasattr(self.sink, "abort"):
            log.warning("%s is stuck; aborting it", self.name)
            self.sink.abort()
            self.thread.join(timeout)
        if self.thread.is_alive():
            log.warning("%s did not finish within %.0f s; left behind", self.name, timeout)
        return self.report()

    def report(self) -> Report:
        return Report(self.written, self.dropped, None if self.error is None else str(self.error))


class Outputs:
    """Every live sink of a run: one frame offered to all, each on its own feed."""

    def __init__(self, feeds: list[Feed]):
        self.feeds = feeds
        self.reports: dict[str, Report] | None = None

    def __bool__(self) -> bool:
        return bool(self.feeds)

    def offer(self, rgb: np.ndarray, tick) -> None:
        for feed in self.feeds:
            feed.offer(rgb, tick)

    def close(self, timeout: float | None = None) -> dict[str, Report]:
        """Close every feed (once; later calls return the same reports)."""
        if self.reports is None:
            self.reports = {feed.name: feed.close(timeout) for feed in self.feeds}
            for name, r in self.reports.items():
                if r.dropped:
                    log.info("%s: %d frames written, %d dropped", name, r.written, r.dropped)
        return self.reports
