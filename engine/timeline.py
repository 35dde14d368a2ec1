"""The show's timeline: cues that fire by themselves (`at`), cue values that ease over a `fade`, live cues and
scene changes quantised to the beat, and the scene commands a frame carries to the Director (engine/scenes.py).

All of it is derived from the show file and the recorded triggers, on the render loop's thread, once per frame:
- a timed cue is a scheduled post of the derived source `cue:timeline` (bound to `scene.cue`), made when the run
  starts, so it fires on the first frame at or after its time, live, offline and in a replay alike;
- a live trigger of `scene.cue`, `scene.go` or `scene.next` with a quantise grid is taken off its frame and
  posted again (source `cue:quantised/...`) at the next beat or bar of the show's tempo;
- a cue with a fade eases each value it sets from where the param is to the cue's value over `fade` seconds
  (smoothstep), in place of the param's own smoothing; a fader that moves the param takes it back.
`cue:` sources are derived: the bus never records them, a replay derives them again.

`Controls` is the run's one control state; each Pipeline reads it through a `View` (its own walk-time offset,
the scene's own starting values, and a bus whose snapshots carry the fades).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from dataclasses import dataclass
from types import MappingProxyType

from engine.controls.bus import DERIVED, Binding, Bus
from engine.controls.state import ControlState
from engine.controls.tempo import Tempo

log = logging.getLogger(__name__)

TIMED = "cue:timeline"  # timed cues: posted at their `at`
QUANTISED = {"scene.cue": "cue:quantised/cue", "scene.go": "cue:quantised/go", "scene.next": "cue:quantised/next",
             "walk.next_keyframe": "cue:quantised/keyframe_next", "walk.prev_keyframe": "cue:quantised/keyframe_prev",
             "walk.keyframe": "cue:quantised/keyframe", "bookmark.recall": "cue:quantised/bookmark"}
SCENE_TRIGGERS = ("scene.cue", "scene.go", "scene.next")
PRESSES = ("scene.next", "walk.next_keyframe", "walk.prev_keyframe")  # buttons: the quantised post is a press


def bindings() -> list[Binding]:
    """The derived sources the timeline posts, bound like the OSC buttons they stand for."""
    where = "timeline (engine/timeline.py)"
    return [Binding(TIMED, "scene.cue", (1.0, 999.0), where=where),
            Binding(QUANTISED["scene.cue"], "scene.cue", (1.0, 999.0), where=where),
            Binding(QUANTISED["scene.go"], "scene.go", (1.0, 999.0), where=where),
            Binding(QUANTISED["scene.next"], "scene.next", where=where),
            Binding(QUANTISED["walk.next_keyframe"], "walk.next_keyframe", where=where),
            Binding(QUANTISED["walk.prev_keyframe"], "walk.prev_keyframe", where=where),
            Binding(QUANTISED["walk.keyframe"], "walk.keyframe", (1.0, 64.0), where=where),
            Binding(QUANTISED["bookmark.recall"], "bookmark.recall", (1.0, 64.0), where=where)]


# --- reading a cue row (engine/show.py calls this for every [[cue]]) ------------------------------------------

def read_cue(cue, row: dict, here: str, show) -> None:
    """`at`, `fade`, `quantise` and `scene` of a `[[cue]]` row onto `cue`, checked; beats and bars are counted with
    the show file's `[tempo]` (not taps: a timed cue is where the file puts it, live and offline)."""
    from engine.show import QUANTISE, RANGES, ShowError, _check_number

    tempo = show.tempo
    period = 60.0 / tempo.bpm
    if "at" in row:
        at = row["at"]
        if isinstance(at, str):
            found = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", at)
            bar, beat = (int(found[1]), int(found[2])) if found else (0, 0)
            if not found or bar < 1 or not 1 <= beat <= tempo.beats_per_bar:
                raise ShowError(f"{here}: at must be seconds or \"bar.beat\" counted from \"1.1\" (beats 1.."
                                f"{tempo.beats_per_bar}), got {at!r}")
            cue.at = tempo.downbeat + ((bar - 1) * tempo.beats_per_bar + beat - 1) * period
        elif isinstance(at, bool) or not isinstance(at, (int, float)):
            raise ShowError(f"{here}: at must be seconds of show time or \"bar.beat\", got {at!r}")
        else:
            cue.at = float(at)
        _check_number(here, "at", cue.at, bounds=RANGES["cue.at"])
    if "fade" in row:
        fade = row["fade"]
        if isinstance(fade, str):
            found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(beat|beats|bar|bars)\s*", fade)
            if not found:
                raise ShowError(f"{here}: fade must be seconds, \"N beats\" or \"N bars\", got {fade!r}")
            beats = float(found[1]) * (tempo.beats_per_bar if found[2].startswith("bar") else 1)
            cue.fade = beats * period
        elif isinstance(fade, bool) or not isinstance(fade, (int, float)):
            raise ShowError(f"{here}: fade must be seconds, \"N beats\" or \"N bars\", got {fade!r}")
        else:
            cue.fade = float(fade)
        _check_number(here, "fade", cue.fade, bounds=RANGES["cue.fade"])
    quantise = row.get("quantise", "")
    if quantise not in (*QUANTISE, "none"):
        raise ShowError(f"{here}: quantise must be \"beat\", \"bar\" or \"none\", got {quantise!r}")
    cue.quantise = quantise
    if "scene" in row:
        from engine.scenes import find

        cue.scene = find(show.scenes, row["scene"], f"{here}: scene")


# --- the run's control state --------------------------------------------------------------------------------

@dataclass
class Fade:
    start: float  # the param's value when the cue fired
    target: float  # the cue's value
    since: float  # show time the fade began
    seconds: float
    frame: float  # the show time of the frame that fired it (the cue's own post follows within that frame)

    def value(self, t: float) -> float:
        u = min(max((t - self.since) / self.seconds, 0.0), 1.0) if self.seconds > 0 else 1.0
        return self.start + (self.target - self.start) * u * u * (3 - 2 * u)  # smoothstep: eased in and out


class Controls(ControlState):
    """The run's control state plus its timeline. `at(t)` takes the frame's snapshot once (further calls at
    the same `t` return it again), so every scene's pipeline of a frame reads the same one; `commands` are the
    scene changes it carried: [(show time, "go", scene index) | (show time, "next", None)]."""

    def __init__(self, show, bus: Bus, replay=None, record: bool = False, feeds=()):
        super().__init__(bus, replay=replay, record=record, feeds=feeds)
        self.show = show
        self.cues = {cue.number: cue for cue in show.cues}
        self.tempo = Tempo(show.tempo.bpm, show.tempo.downbeat, show.tempo.beats_per_bar)  # build() hands over
        self.fades: dict[str, Fade] = {}
        self.commands: list[tuple] = []
        self._late: list[tuple] = []  # scene triggers seen in a frame's second snapshot: next frame's commands
        self._frame = None  # (t, snapshot) of the current frame
        self._readers: list = []  # who has read it
        for cue in show.cues:
            if cue.at is not None:
                bus.post(TIMED, float(cue.number), at=cue.at)

    def at(self, t: float):
        return self.shape(self.frame(t, self)), self.walk_time

    def frame(self, t: float, reader):
        """The frame's snapshot (fades not yet applied), taken once per frame: a new show time, or a reader (a
        scene player, a pipeline's view) asking a second time, starts the next frame (a paused clock repeats t)."""
        if self._frame is None or self._frame[0] != t or reader in self._readers:
            snap, _ = super().at(t)
            self.commands, self._late = self._late, []
            self._frame, self._readers = (t, self._triggers(snap, t)), []
        self._readers.append(reader)
        return self._frame[1]

    def take_commands(self) -> list[tuple]:
        commands, self.commands = self.commands, []
        return commands

    def view(self, starts: dict | None = None) -> View:
        return View(self, starts or {})

    # --- triggers: quantise, fades, scene commands ---

    def _triggers(self, snap, t: float, late: bool = False):
        strip = set()
        for name in QUANTISED:  # scene changes, keyframe jumps, bookmark recalls
            if not snap.fired(name):
                continue
            value, source = snap[name], snap.held_by.get(name) or ""
            grid = "" if source.startswith(DERIVED) else self._grid(name, value, source)  # cues, beats: on time
            if grid:
                when = self.next_on(grid, t)
                if when > t + 1e-9:
                    self.bus.post(QUANTISED[name], value if name not in PRESSES else 1.0, at=when)
                    strip.add(name)
                    continue
            if name not in SCENE_TRIGGERS:
                continue  # the pipeline jumps and recalls on this frame
            if late and name == "scene.cue":
                continue  # the pipeline has applied this frame's cue already
            self._fire(name, value, t, snap, source)
        return dataclasses.replace(snap, triggers=snap.triggers - strip) if strip else snap

    def late(self, snap, t: float):
        """A second snapshot in the same frame (a pipeline's, after its derived posts): scene changes it fired
        (a `tempo:downbeat` bound to scene.next) go to the next frame, at this show time."""
        before = self.commands
        self.commands = []
        snap = self._triggers(snap, t, late=True)  # a trigger that waits for the beat is taken off this frame
        self._late += self.commands
        self.commands = before
        return snap

    def _grid(self, name: str, value: float, source: str = "") -> str:
        """The grid a live trigger waits for: the cue's own `quantise`, else the binding's that fired it, else
        the show's `[tempo] quantise` ("": at once)."""
        if name == "scene.cue":
            cue = self.cues.get(int(value))
            if cue is not None and cue.quantise:
                return "" if cue.quantise == "none" else cue.quantise
        for b in self.bus.routes(source):
            if b.target == name and b.quantise:
                return "" if b.quantise == "none" else b.quantise
        return self.show.tempo.quantise

    def next_on(self, grid: str, t: float) -> float:
        """The show time of the next beat (or bar) at or after `t`, on the show's tempo (taps included)."""
        step = self.tempo.beats_per_bar if grid == "bar" else 1
        n = math.ceil(self.tempo.beats_at(t) / step - 1e-9) * step
        return self.tempo.downbeat + n * self.tempo.period

    def _fire(self, name: str, value: float, t: float, snap, source: str) -> None:
        if name == "scene.go":
            self.commands.append((t, "go", int(value) - 1))  # scenes count from 1, as cues do
        elif name == "scene.next":
            self.commands.append((t, "next", None))
        else:
            cue = self.cues.get(int(value))
            if cue is None:
                return
            since = cue.at if source == TIMED and cue.at is not None and cue.at <= t else t
            shown = self.shape(snap)
            for param, target in cue.set.items():
                if cue.fade > 0:
                    self.fades[param] = Fade(shown[param], target, since, cue.fade, t)
                else:
                    self.fades.pop(param, None)  # the cue's value, with the param's own smoothing
            if cue.scene is not None:
                self.commands.append((since, "go", cue.scene))

    # --- shaping a snapshot ---

    def shape(self, snap, starts: dict | None = None):
        """`snap` with the fades applied, and `starts` (a scene's own starting values) for params no source
        has moved. A fade ends when something other than its cue takes the param."""
        if not self.fades and not starts:
            return snap
        values = dict(snap.values)
        for param, fade in list(self.fades.items()):
            holder = snap.held_by.get(param)
            if holder != f"cue:{param}" and snap.t != fade.frame:
                del self.fades[param]  # a fader (or another cue's source) has it now
                continue
            values[param] = fade.value(snap.t)
        for param, value in (starts or {}).items():
            if snap.held_by.get(param) is None and param not in self.fades:
                values[param] = value
        return dataclasses.replace(snap, values=MappingProxyType(values))


class BusView:
    """The bus as one pipeline sees it: posts go to the run's bus; snapshots come back shaped."""

    def __init__(self, controls: Controls, starts: dict):
        self._controls, self._starts = controls, starts
        self._bus = controls.bus

    def snapshot(self, t: float):
        snap = self._bus.snapshot(t)
        snap = self._controls.late(snap, t)
        snap = self._controls.shape(snap, self._starts)
        self._bus.latest = snap  # the trail and the status page read what the frame used
        return snap

    def __getattr__(self, name):
        return getattr(self._bus, name)


class View:
    """What a Pipeline holds as its `controls`: the run's snapshot, shaped for its scene, and its own walk time
    (a keyframe jump in one scene moves that scene's walk only)."""

    def __init__(self, controls: Controls, starts: dict):
        self.controls, self.starts = controls, starts
        self.bus = BusView(controls, starts)
        self._offset = 0.0

    def at(self, t: float):
        snap = self.controls.shape(self.controls.frame(t, self), self.starts)
        self.controls.bus.latest = snap  # the trail and the status page read what the frame used
        return snap, self.walk_time

    @property
    def walk_time(self) -> float:
        return self.controls.walk_time + self._offset

    @walk_time.setter
    def walk_time(self, value: float) -> None:
        self._offset = value - self.controls.walk_time

    @property
    def replay(self):
        return self.controls.replay


def end_of_cues(show) -> float | None:
    """When the last timed cue has finished fading (None: no timed cues)."""
    ends = [cue.at + cue.fade for cue in show.cues if cue.at is not None]
    return max(ends) if ends else None
