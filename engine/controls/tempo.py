"""Tempo: tap tempo, a beat phase that is a pure function of show time, and Ableton Link where it is installed.

`Tempo` holds a BPM and a downbeat (the show time of beat 0). `phase_at(t)`, `beat_index_at(t)` and
`features_at(t, since)` depend on nothing but `t` and those two numbers, so offline renders see the same
beats as the live show. Taps change them: feed `tap(t)` from the render loop with the snapshot's show
time when a tap trigger fires (`osc:/masq/tempo/tap`, a MIDI pad's `midi:note/10/36`), not from an input
thread, so that a recording of the taps replays to the same beats.

Tap tempo: the BPM is 60 / the median of the last `history` intervals (a late or early tap moves it
little); a pause longer than `reset_after` seconds starts a new series; each tap puts a beat on the tap,
keeping the beat count.

`LinkClock` joins an Ableton Link session (the `aalink` binding, else `LinkPython`'s `link`; guarded:
`LinkClock.available()` says whether one imports). It is a device: `state` is "lost" with a `reason` where
no binding is installed. Its beat runs on Link's clock, not show time, so it suits live shows only.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections import deque

MIN_BPM, MAX_BPM = 20.0, 400.0


class Tempo:
    def __init__(self, bpm: float = 120.0, downbeat: float = 0.0, beats_per_bar: int = 4, reset_after: float = 2.0,
                 history: int = 8):
        if not MIN_BPM <= bpm <= MAX_BPM:
            raise ValueError(f"bpm must be within {MIN_BPM:g}..{MAX_BPM:g}, got {bpm}")
        self.bpm, self.downbeat, self.beats_per_bar = float(bpm), float(downbeat), int(beats_per_bar)
        self.reset_after = reset_after
        self._taps: deque[float] = deque(maxlen=history + 1)

    @property
    def period(self) -> float:
        return 60.0 / self.bpm

    def set(self, bpm: float | None = None, downbeat: float | None = None) -> None:
        if bpm is not None:
            self.bpm = min(max(float(bpm), MIN_BPM), MAX_BPM)
        if downbeat is not None:
            self.downbeat = float(downbeat)

    def tap(self, t: float) -> float | None:
        """A tap at show time `t`; returns the new BPM, or None while there is only one tap in the series."""
        if self._taps and not 0 < t - self._taps[-1] <= self.reset_after:
            self._taps.clear()  # a long pause (or time going backwards): a new series
        self._taps.append(t)
        if len(self._taps) < 2:
            return None
        taps = list(self._taps)
        interval = statistics.median(b - a for a, b in zip(taps, taps[1:]))
        old_beat = self.beats_at(t)
        self.set(bpm=60.0 / interval)
        # a beat on this tap, numbered as the nearest beat of the old grid, so bars keep counting
        self.downbeat = t - round(old_beat) * self.period
        return self.bpm

    def beats_at(self, t: float) -> float:
        """Beats since the downbeat (fractional; negative before it)."""
        return (t - self.downbeat) / self.period

    def beat_index_at(self, t: float) -> int:
        return math.floor(self.beats_at(t) + 1e-9)

    def phase_at(self, t: float) -> float:
        """Where in the beat `t` falls: 0 on the beat, rising to just under 1 before the next."""
        b = self.beats_at(t)
        return max(0.0, b - math.floor(b + 1e-9))  # a hair under a whole beat (rounding) counts as on it

    def bar_phase_at(self, t: float) -> float:
        b = self.beats_at(t) / self.beats_per_bar
        return max(0.0, b - math.floor(b + 1e-9))

    def features_at(self, t: float, since: float | None = None) -> dict[str, float]:
        """`tempo:bpm`, `tempo:phase`, `tempo:bar_phase`, and `tempo:beat` (1 if a beat fell in (since, t],
        `since` being the previous frame's time; None: only a beat exactly at `t`) and `tempo:downbeat`
        (the same for the first beat of a bar)."""
        now = self.beat_index_at(t)
        window = since is not None and since < t
        before = self.beat_index_at(since) if window else now - 1
        on_grid = window or self.phase_at(t) < 1e-6
        crossed = range(before + 1, now + 1) if on_grid else range(0)
        return {"tempo:bpm": self.bpm, "tempo:phase": self.phase_at(t), "tempo:bar_phase": self.bar_phase_at(t),
                "tempo:beat": 1.0 if len(crossed) else 0.0,
                "tempo:downbeat": 1.0 if any(b % self.beats_per_bar == 0 for b in crossed) else 0.0}


def _binding():
    """(name, module) of the first Ableton Link binding that imports, or (None, reason)."""
    errors = []
    for name in ("aalink", "link"):
        try:
            return name, __import__(name)
        except Exception as e:  # ImportError, or a binary built for another system
            errors.append(f"{name}: {e}")
    return None, "no Ableton Link binding (pip install aalink): " + "; ".join(errors)


class LinkClock:
    """An Ableton Link session's tempo and beat (live only). `start()`, `stop()`, `state`, `reason`."""

    def __init__(self, bpm: float = 120.0, quantum: float = 4.0):
        self.bpm, self.quantum = bpm, quantum
        self.state, self.reason = "stopped", ""
        self._link = None
        self._kind = None
        self._lock = threading.Lock()

    @staticmethod
    def available() -> bool:
        return _binding()[0] is not None

    def start(self) -> LinkClock:
        name, module = _binding()
        if name is None:
            self.state, self.reason = "lost", module
            return self
        try:
            if name == "aalink":
                import asyncio
                import warnings

                with warnings.catch_warnings():  # aalink wants an event loop; we only read its properties
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self._loop = asyncio.new_event_loop()
                    link = module.Link(self.bpm, self._loop)
                link.quantum = self.quantum
            else:
                link = module.Link(self.bpm)
            link.enabled = True
        except Exception as e:
            self.state, self.reason = "lost", f"Ableton Link ({name}) failed to start: {e}"
            return self
        self._link, self._kind, self.state, self.reason = link, name, "connected", ""
        return self

    def stop(self) -> None:
        if self._link is not None:
            try:
                self._link.enabled = False
            except Exception:
                pass
            self._link = None
            if self._kind == "aalink":
                self._loop.close()
        self.state = "stopped"

    def __enter__(self) -> LinkClock:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def now(self) -> dict[str, float] | None:
        """{"tempo:bpm", "tempo:beat_count", "tempo:phase" (within a beat), "tempo:peers"}; None when lost."""
        link = self._link
        if link is None:
            return None
        try:
            if self._kind == "aalink":
                bpm, beat, peers = link.tempo, link.beat, link.num_peers
            else:
                s = link.captureSessionState()
                micros = link.clock().micros()
                bpm, beat, peers = s.tempo(), s.beatAtTime(micros, self.quantum), link.numPeers()
        except Exception as e:
            self.state, self.reason = "lost", f"Ableton Link: {e}"
            return None
        return {"tempo:bpm": float(bpm), "tempo:beat_count": float(beat), "tempo:phase": float(beat) % 1.0,
                "tempo:peers": float(peers)}
