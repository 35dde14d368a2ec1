"""What a frame reads from the control bus: one snapshot per generated frame, and the walk's own clock.

Live speed changes must not make the picture jump, so walks are not fed show time directly: they are
fed *walk time*, which advances by `walk.speed` × elapsed show time (trapezoid rule between frames).
Walk time is part of the control state: the same show with the same recorded events, rendered at the
same frame times, gives the same walk time and so the same frames (DESIGN: a frame is a pure function
of show time and control state).
"""

from __future__ import annotations

from engine.controls.bus import Bus, Snapshot
from engine.controls.record import Recording, Replay


class AudioFeed:
    """An audio file as a control source that is a pure function of show time: the features of the
    frame at `t`, triggers counted since the previous frame, posted at `t` (renders, headless runs)."""

    def __init__(self, path):
        from engine.controls.audio import AudioAnalysis

        self.analysis = AudioAnalysis.from_file(path)
        self._previous: float | None = None

    def __call__(self, bus: Bus, t: float) -> None:
        for source, value in self.analysis.features_at(t, self._previous).items():
            bus.post(source, value, at=t)
        self._previous = t


class MidiFileFeed:
    """A .mid file's events posted at their own show times: frame-exact, live and offline alike."""

    def __init__(self, path):
        from engine.controls.midi import file_events

        self.events = file_events(path)  # [(seconds, source, value)], in time order
        self._next = 0

    def __call__(self, bus: Bus, t: float) -> None:
        while self._next < len(self.events) and self.events[self._next][0] <= t:
            when, source, value = self.events[self._next]
            bus.post(source, value, at=when)
            self._next += 1


class TempoFeed:
    """The show's `Tempo` as sources (`tempo:beat`, `tempo:downbeat`, `tempo:phase`, `tempo:bar_phase`,
    `tempo:bpm`), posted at each frame's show time: beats that fell since the previous frame fire once."""

    def __init__(self, tempo):
        self.tempo = tempo
        self._previous: float | None = None

    def __call__(self, bus: Bus, t: float) -> None:
        for source, value in self.tempo.features_at(t, self._previous).items():
            bus.post(source, value, at=t)
        self._previous = t


class ControlState:
    def __init__(self, bus: Bus, replay: Recording | None = None, record: bool = False, feeds=()):
        self.bus = bus
        self.feeds = list(feeds)  # callables (bus, t) that post show-time sources before each snapshot
        self.replay = Replay(replay) if replay is not None else None
        if record:
            bus.recording = Recording()
        self.walk_time = 0.0
        self._last: tuple[float, float] | None = None  # (show time, speed) of the previous frame

    def at(self, t: float) -> tuple[Snapshot, float]:
        """The snapshot for the frame at show time `t` and the walk time there. Call once per frame,
        from one thread, with non-decreasing `t` (an earlier `t` holds the walk where it is)."""
        if self.replay is not None:
            self.replay.feed(self.bus, t)
        for feed in self.feeds:
            feed(self.bus, t)
        snap = self.bus.snapshot(t)
        speed = snap["walk.speed"]
        if self._last is None:  # the show started (or the run joined it) at t: walk time is show time so far
            self.walk_time = t * speed
        else:
            t0, speed0 = self._last
            self.walk_time += max(0.0, t - t0) * (speed0 + speed) / 2
        self._last = (max(t, self._last[0]) if self._last else t, speed)
        return snap, self.walk_time
