"""What every device input shares: a thread, a state, counters, reconnecting with back-off, and easing to rest.

A device input (camera, microphone, MIDI port, or a file standing in for one) is a `Source`. It runs in its
own thread, reads its device, and posts named features to the bus (`camera:motion`, `audio:level`). It
never raises into the caller once started and never blocks the render loop (the loop only reads bus
snapshots). When the device is lost (a read fails, a file ends, a cable is pulled), the source:

1. sets `state` to "lost" and says why in `reason`;
2. eases every continuous feature it posted down to 0 over `decay` seconds (a cosine ease, posted at
   ~30 Hz), then releases them on the bus so another source in line can take over;
3. reopens the device after 0.5 s, then 1, 2, 4 ... up to 10 s between attempts (`state` is
   "reconnecting" during an attempt). The back-off starts again from 0.5 s only after a connection has
   lasted `stable` seconds, so a device that opens and fails at once is not hammered.

A subclass implements `_open()` (raise `DeviceLost` or any exception when the device cannot be opened),
`_step()` (read once and post; return False or raise when the device is lost) and `_close()`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

log = logging.getLogger("masquerade.inputs")

STATES = ("stopped", "reconnecting", "connected", "lost")


class DeviceLost(Exception):
    """The device cannot be opened or read any more; the message says why (it becomes `Source.reason`)."""


@dataclass
class SourceStats:
    """Counters for the status page; `Source.stats` returns a copy."""
    attempts: int = 0  # tries to open the device
    connects: int = 0  # tries that succeeded
    losses: int = 0  # times the device was lost after connecting (or could not be opened)
    reads: int = 0  # frames, audio blocks or messages read
    posted: int = 0  # events posted to the bus
    errors: int = 0  # unexpected exceptions (logged with a traceback), each handled as a loss


class Source:
    """Base class of the device inputs: `start()`, `stop()`, `state`, `reason`, `stats`, `attempt_times`."""

    kind = "source"  # the scheme and the thread name: "camera", "audio", "midi"

    def __init__(self, bus, *, decay: float = 1.0, backoff: tuple[float, float] = (0.5, 10.0),
                 stable: float = 5.0, clock: Callable[[], float] = time.monotonic):
        if backoff[0] <= 0 or backoff[1] < backoff[0]:
            raise ValueError(f"backoff must be (first > 0, cap >= first), got {backoff}")
        self.bus, self.decay, self.backoff, self.stable, self.clock = bus, float(decay), backoff, stable, clock
        self._state, self.reason = "stopped", ""
        self._stats = SourceStats()
        self.attempt_times: deque[float] = deque(maxlen=64)  # clock() at each open attempt, newest last
        self._last: dict[str, float] = {}  # continuous features as last posted, for the ease to rest
        self._posted: set[str] = set()  # every source posted, released at stop
        self._fading: dict[str, tuple[float, float]] = {}  # easing to rest: (value, clock) when the ease began
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- the caller's side ---

    @property
    def state(self) -> str:
        return self._state

    @property
    def stats(self) -> SourceStats:
        return replace(self._stats)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self):
        if self.running:
            return self
        self._stop.clear()
        self._state = "reconnecting"
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-input", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (waiting at most `timeout` s: a driver stuck in a read is left to die with the
        process), close the device and release the features."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._state = "stopped"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- for subclasses ---

    def _open(self) -> None:
        raise NotImplementedError

    def _step(self) -> bool:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def post(self, name: str, value: float, continuous: bool = True, at: float | None = None) -> None:
        """Post `kind:name`; continuous features are remembered so that a loss can ease them to rest."""
        source = f"{self.kind}:{name}"
        self._posted.add(source)
        if continuous:
            self._last[source] = float(value)
            self._fading.pop(source, None)
        self.bus.post(source, float(value), at=at)
        self._stats.posted += 1

    def _count_read(self, n: int = 1) -> None:
        self._stats.reads += n

    def _wait(self, seconds: float) -> bool:
        """Sleep, waking for stop; True if stop was asked."""
        return self._stop.wait(max(0.0, seconds))

    # --- the thread ---

    def _run(self) -> None:
        delay = self.backoff[0]
        while not self._stop.is_set():
            self._state = "reconnecting"
            self._stats.attempts += 1
            self.attempt_times.append(self.clock())
            connected_at = None
            try:
                self._open()
                connected_at = self.clock()
                self._stats.connects += 1
                self._state, self.reason = "connected", ""
                log.info("%s: connected", self.kind)
                while not self._stop.is_set():
                    self._fade_tick()
                    if not self._step():
                        raise DeviceLost(self.reason or "the device stopped delivering")
            except DeviceLost as e:
                self.reason = str(e)
            except Exception as e:  # a driver's error or a bug: it must not end the thread
                self._stats.errors += 1
                self.reason = f"{type(e).__name__}: {e}"
                log.exception("%s: unexpected error", self.kind)
            finally:
                try:
                    self._close()
                except Exception:
                    log.exception("%s: closing failed", self.kind)
            if self._stop.is_set():
                break
            self._stats.losses += 1
            self._state = "lost"
            level = logging.WARNING if connected_at is not None or self._stats.losses == 1 else logging.DEBUG
            log.log(level, "%s lost (%s); retrying in %.1f s", self.kind, self.reason, delay)
            if connected_at is not None and self.clock() - connected_at >= self.stable:
                delay = self.backoff[0]
            if self._rest(delay):
                break
            delay = min(delay * 2, self.backoff[1])
        self._release_all()

    def _rest(self, wait: float) -> bool:
        """Wait `wait` s before the next attempt, easing the features meanwhile; True if stop was asked."""
        now = self.clock()
        self._fading.update({source: (v, now) for source, v in self._last.items()})
        self._last = {}
        end = now + wait
        while (left := end - self.clock()) > 0:
            self._fade_tick()
            if self._wait(min(1 / 30, left)):
                return True
        return self._stop.is_set()

    def _fade_tick(self) -> None:
        """Post the eased values of lost features (a cosine ease from 1 to 0, flat at both ends); at the end
        post 0 and release them."""
        if not self._fading:
            return
        now = self.clock()
        for source, (v, since) in list(self._fading.items()):
            s = (now - since) / self.decay if self.decay > 0 else 1.0
            value = 0.0 if s >= 1 else v * 0.5 * (1 + math.cos(math.pi * s))
            self.bus.post(source, value)
            if value == 0.0:
                self.bus.release(source)
                del self._fading[source]

    def _release_all(self) -> None:
        for source in sorted(self._posted):
            self.bus.release(source)
        self._last, self._fading, self._posted = {}, {}, set()
