"""Scenes: a show in parts. Each `[[scene]]` row is a Show derived from the file's own (its model, walk, style and
filters, any subset; the rest inherited), with a duration or "until cued" and a transition into it.

- `resolve` reads the rows into `Scene`s at load time; every error names the file and `scene[N]`.
- `Director` says, for show time `t` and the scene commands of the frame, which scene plays, which one it is
  leaving, and how far the transition is: a pure function of show time and the (recorded) commands, so a
  replay, a render and a live run change scenes on the same frame.
- `ScenePlayer` draws a frame: one Pipeline per scene, both drawn while a transition runs and blended here on
  the torch side (deterministic, on the device), at the first scene's work size.
- `build` is the one place a show becomes the loop's frame source: a Pipeline, or a ScenePlayer.

Transitions: `cut`; `crossfade` (a linear mix over `seconds`); `fade-through` (to `colour` by the midpoint, then
from it); `glide` (the incoming scene's pipeline alone, its latent eased from the outgoing scene's walk to its
own: both scenes must use the same model, else it is drawn as a crossfade).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field

from engine.show import (
    RANGES,
    ModelSection,
    Show,
    ShowError,
    StyleSection,
    _check_number,
    _filters,
    _section,
    _walk,
    control_params,
)

log = logging.getLogger(__name__)

KINDS = ("cut", "crossfade", "fade-through", "glide")
UNTIL_CUED = "until cued"
ROW_KEYS = ("name", "duration", "transition", "model", "walk", "style", "filters")


@dataclass(frozen=True)
class Transition:
    kind: str = "cut"
    seconds: float = 0.0
    colour: tuple[float, float, float] = (0.0, 0.0, 0.0)  # fade-through


@dataclass
class Scene:
    number: int  # from 1: /masq/scene/go N
    name: str
    where: str  # "piece.toml: scene[2]"
    show: Show  # the derived show this scene plays
    duration: float | None  # seconds from the start of its transition in; None: until cued
    transition: Transition = field(default_factory=Transition)


# --- reading the rows -----------------------------------------------------------------------------------------

def resolve(data: dict, show: Show, where: str) -> list[Scene]:
    rows = data.get("scene", [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ShowError(f"{where}: scene must be [[scene]] tables, one per scene")
    scenes: list[Scene] = []
    for i, row in enumerate(rows, 1):
        here = f"{where}: scene[{i}]"
        unknown = sorted(set(row) - set(ROW_KEYS))
        if unknown:
            raise ShowError(f"{here}: unknown key {unknown[0]!r} (expected {', '.join(ROW_KEYS)}; the rest of the "
                            "show is shared by every scene)")
        name = row.get("name", f"scene{i}")
        if not isinstance(name, str) or not name.strip() or name.strip().isdigit():
            raise ShowError(f"{here}.name must be a word (not a number: /masq/scene/go takes both), got {name!r}")
        if name in {s.name for s in scenes}:
            raise ShowError(f"{here}.name {name!r} is taken by an earlier scene")
        for key in ("model", "walk", "style"):
            if key in row and not isinstance(row[key], dict):
                raise ShowError(f"{here}.{key} must be a table, got {row[key]!r}")
        base_walk = data.get("walk", {}) if isinstance(data.get("walk", {}), dict) else {}
        walk = row.get("walk", {})
        if "kind" in walk and walk["kind"] != base_walk.get("kind", "keyframes"):
            merged_walk = dict(walk)  # another kind: its own options only
        else:
            merged_walk = {**base_walk, **walk}
        derived = dataclasses.replace(
            show, name=f"{show.name}: {name}", scenes=[], cues=[], bindings=[],
            model=_section(ModelSection, {"model": {**data.get("model", {}), **row.get("model", {})}}, "model", here),
            walk=_walk(merged_walk, here),
            style=_section(StyleSection, {"style": {**data.get("style", {}), **row.get("style", {})}}, "style", here),
            filters=_filters(row.get("filters", data.get("filters", [])), here))
        derived.model.validate(here)
        derived.style.validate(here)
        derived.walk.validate(here)
        if not derived.model_path.is_file():
            raise ShowError(f"{here}.model.path: {derived.model_path}: no such model file")
        duration = row.get("duration")
        if duration == UNTIL_CUED:
            duration = None
        elif isinstance(duration, bool) or not isinstance(duration, (int, float)):
            raise ShowError(f"{here}.duration must be seconds or \"{UNTIL_CUED}\", got {duration!r}")
        else:
            duration = float(duration)
            _check_number(where, f"scene[{i}].duration", duration, bounds=RANGES["scene.duration"])
        scenes.append(Scene(i, name, here, derived, duration, _transition(row.get("transition", "cut"), where, i)))
    for i, scene in enumerate(scenes):
        t = scene.transition
        if scene.duration is not None and t.seconds > scene.duration:
            raise ShowError(f"{scene.where}.transition.seconds ({t.seconds:g}) is longer than its duration "
                            f"({scene.duration:g})")
        before = scenes[i - 1] if i or show.timeline.loop else None
        if t.kind == "glide" and before is not None and before.show.model_path != scene.show.model_path:
            raise ShowError(f"{scene.where}.transition: glide needs the model of scene[{before.number}] (the scene "
                            f"before it), {before.show.model.path}; use crossfade between models")
    return scenes


def _transition(value, where: str, i: int) -> Transition:
    here = f"{where}: scene[{i}].transition"
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, dict):
        raise ShowError(f"{here} must be a kind ({', '.join(KINDS)}) or a table {{ kind = ..., seconds = ... }}, "
                        f"got {value!r}")
    unknown = sorted(set(value) - {"kind", "seconds", "colour"})
    if unknown:
        raise ShowError(f"{here}: unknown key {unknown[0]!r} (expected kind, seconds, colour)")
    kind = value.get("kind", "cut")
    if kind not in KINDS:
        raise ShowError(f"{here}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    seconds = value.get("seconds", 0.0 if kind == "cut" else 1.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ShowError(f"{here}.seconds must be a number, got {seconds!r}")
    _check_number(where, f"scene[{i}].transition.seconds", float(seconds), bounds=RANGES["scene.transition.seconds"])
    if kind == "cut" and seconds:
        raise ShowError(f"{here}: a cut takes no seconds (crossfade, fade-through and glide do)")
    if kind != "cut" and not seconds:
        kind = "cut"  # 0 seconds of anything is a cut
    colour = value.get("colour", [0.0, 0.0, 0.0])
    if "colour" in value and kind != "fade-through":
        raise ShowError(f"{here}.colour belongs to a fade-through, not a {kind}")
    if not isinstance(colour, list) or any(isinstance(c, bool) or not isinstance(c, (int, float)) for c in colour):
        raise ShowError(f"{here}.colour must be [r, g, b] in 0..1, got {colour!r}")
    _check_number(where, f"scene[{i}].transition.colour", tuple(float(c) for c in colour), (0.0, 0.0, 0.0),
                  bounds=RANGES["scene.transition.colour"])
    return Transition(kind, float(seconds), tuple(float(c) for c in colour))


def find(scenes: list[Scene], value, where: str) -> int:
    """A scene by number (from 1) or name -> its index."""
    for s in scenes:
        if (isinstance(value, str) and value == s.name) or (not isinstance(value, bool) and value == s.number):
            return s.number - 1
    names = ", ".join(f"{s.number} {s.name!r}" for s in scenes) or "none: the show has no [[scene]] rows"
    raise ShowError(f"{where} must be a scene's number or name ({names}), got {value!r}")


def inherit(show: Show) -> None:
    """Every scene plays the show's cues and bindings (checked against all the scenes' params)."""
    for scene in show.scenes:
        scene.show.cues, scene.show.bindings = show.cues, show.bindings


def all_params(show: Show, params: list) -> list:
    """The show's params and every scene's, one per name; a name two scenes declare with different ranges is an
    error naming the scene (two filters of different kinds share a name)."""
    found = {p.name: p for p in params}
    for scene in show.scenes:
        for p in control_params(scene.show):
            old = found.setdefault(p.name, p)
            if (old.minimum, old.maximum, old.smoothing, old.trigger) != (p.minimum, p.maximum, p.smoothing, p.trigger):
                raise ShowError(f"{scene.where}: param {p.name} is {p.minimum:g}..{p.maximum:g} here but "
                                f"{old.minimum:g}..{old.maximum:g} in another scene: give one filter row its own "
                                "name = \"...\"")
    return list(found.values())


# --- which scene plays ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Active:
    scene: int  # index of the scene playing (the incoming one during a transition)
    previous: int | None = None  # the scene it is leaving, while the transition runs
    progress: float = 1.0  # 0..1 through the transition
    transition: Transition = Transition()


class Director:
    """Which scene plays at show time `t`. `advance(t, commands)` once per frame with non-decreasing `t`; the
    commands are the frame's scene changes [(show time, "go", index) | (show time, "next", None)]. A scene with
    a duration hands over to the next when it is up (its transition starts then); after the last, the first
    again (`loop`) or the last holds."""

    def __init__(self, scenes: list[Scene], loop: bool = True):
        self.scenes, self.loop = scenes, loop
        self.current, self.previous, self.since = 0, None, 0.0

    def advance(self, t: float, commands=()) -> Active:
        n = len(self.scenes)
        for when, kind, value in sorted(commands, key=lambda c: c[0]):
            when = max(when, self.since)
            self._auto(when)
            if kind == "next":
                if self.current == n - 1 and not self.loop:
                    continue
                value = (self.current + 1) % n
            if value is None or not 0 <= value < n:
                log.info("scene %s is not in the show; ignored", None if value is None else value + 1)
                continue
            self._start(value, when)
        self._auto(t)
        return self.active(t)

    def _auto(self, t: float) -> None:
        n = len(self.scenes)
        while True:
            duration = self.scenes[self.current].duration
            if duration is None or self.since + duration > t:
                return
            if self.current == n - 1 and not self.loop:
                return  # the end: the last scene holds
            end = self.since + duration
            if n == 1:
                self.since = end
            else:
                self._start((self.current + 1) % n, end)

    def _start(self, index: int, at: float) -> None:
        if index == self.current:
            return
        self.previous, self.current, self.since = self.current, index, at

    def active(self, t: float) -> Active:
        tr = self.scenes[self.current].transition
        if self.previous is None or tr.kind == "cut" or t >= self.since + tr.seconds:
            return Active(self.current)
        return Active(self.current, self.previous, (t - self.since) / tr.seconds, tr)


def end_of(show: Show) -> float | None:
    """Show time at which the piece is over: the last scene's end (scenes with durations that do not loop) or the
    last timed cue's end, whichever is later; None when it plays for ever."""
    from engine.timeline import end_of_cues

    cues_end = end_of_cues(show)
    if not show.scenes:
        return cues_end
    scenes_end = end_of_scenes(show)
    return None if scenes_end is None else max(scenes_end, cues_end or 0.0)


def end_of_scenes(show: Show) -> float | None:
    """Show time at which the last scene ends (timed scene cues followed), without the other cues' ends; None
    without scenes, when they loop, or when one plays until cued."""
    if not show.scenes or show.timeline.loop:
        return None
    director = Director(show.scenes, loop=False)
    for cue in sorted((c for c in show.cues if c.at is not None and c.scene is not None), key=lambda c: c.at):
        director.advance(cue.at, [(cue.at, "go", cue.scene)])
    t, i = director.since, director.current
    while True:
        if show.scenes[i].duration is None:
            return None
        t += show.scenes[i].duration
        if i == len(show.scenes) - 1:
            return t
        i += 1


# --- drawing ------------------------------------------------------------------------------------------------

class Glide:
    """A walk that eases from another walk's latent to its own: `u` 0 the outgoing walk, 1 its own."""

    def __init__(self, outgoing, own, u: float):
        self.outgoing, self.own, self.u = outgoing, own, u

    def step(self, tick):
        from engine.walks.keyframes import slerp

        a, b = self.outgoing.step(tick), self.own.step(tick)  # [1, z_dim] each
        return slerp(a[0], b[0].to(a), self.u)[None]

    def __getattr__(self, name):  # jump, follow, clock, classes: the scene's own walk
        return getattr(self.own, name)


def _ease(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)


class ScenePlayer:
    """The frame source of a show with scenes: the Pipeline interface the loop uses (`generate`, `times`,
    `work_size`, `device`, `controls`, `mirror`, `link`). Offline (`background=False`) every scene's pipeline is
    built before the first frame; live, the first is, and the rest load in a background thread in play order,
    so a transition finds its scene ready (a cue to a scene still loading waits for it).

    A scene whose pipeline cannot be built (a model file that exists but is corrupt, a filter that runs out of
    memory) is not played: when its turn comes, or a cue names it, the scene on screen plays on, and the failure
    is in `failed` (scene index -> one line), which the heartbeat carries to the kiosk's status page. The first
    scene is the exception: a show that cannot draw its opening scene is refused at start, like any show."""

    def __init__(self, show: Show, device: str, controls, background: bool = False):
        from engine.pipeline import resolve_device
        from engine.stats import StageTimes

        self.show, self.controls, self._device = show, controls, device
        self.device = resolve_device(device)
        self.director = Director(show.scenes, show.timeline.loop)
        self.times = StageTimes()
        self.pipelines: list = [None] * len(show.scenes)
        self._ready = [threading.Event() for _ in show.scenes]
        self.failed: dict[int, str] = {}  # scenes that could not be built: index -> why, in one line
        self._stand_in: dict[int, int] = {}  # a failed scene -> the scene that was on screen when its turn came
        self._scene = 0  # the director's scene at the last frame
        self._mirror = self._link = None
        self.loads: list[tuple[int, float]] = []  # (scene number, seconds it took to build), in order
        self._live = False  # warm_up was called: every scene's compiled generator may warm up as it plays
        self._load(0)
        self.work_size = self.pipelines[0].work_size
        self.current = 0
        controls.tempo = self.pipelines[0].tempo
        rest = range(1, len(show.scenes))
        if background:
            self._loader = threading.Thread(target=lambda: [self._load(i) for i in rest], name="masquerade-scenes",
                                            daemon=True)
            self._loader.start()
        else:
            for i in rest:
                self._load(i)

    def _load(self, i: int) -> None:
        from engine.pipeline import Pipeline

        scene, started = self.show.scenes[i], time.perf_counter()
        try:
            params = self.controls.bus.params
            starts = {p.name: p.default for p in control_params(scene.show)
                      if p.name in params and params[p.name].default != p.default}
            pipeline = Pipeline(scene.show, self._device, self.controls.view(starts))
            pipeline.times = self.times
            pipeline.mirror, pipeline.link = self._mirror, self._link
            self.pipelines[i] = pipeline
            if self._live:  # loaded after the show went live (a background load)
                pipeline.warm_up()
            self.loads.append((scene.number, time.perf_counter() - started))
        except Exception as e:  # noqa: BLE001 - whatever a scene's build raises, the scene on screen plays on
            if i == 0:
                raise
            self.failed[i] = " ".join(str(e).split())[:300] or type(e).__name__
            log.error("%s could not be built, it will be skipped (the scene before it plays on): %s", scene.where,
                      self.failed[i])
        finally:
            self._ready[i].set()

    def warm_up(self) -> None:
        """Live shows: each scene's compiled generator (`[model] compile`) warms up in the background from its
        first frame on, while its eager one draws (Pipeline.warm_up); scenes that never play never compile, and
        background compiles run one at a time (engine/generators/speed.py)."""
        self._live = True
        for p in list(self.pipelines):
            if p is not None:
                p.warm_up()

    def cool_down(self) -> None:
        """Dropped (a kiosk switched away): no scene's compile that has not begun will run (Pipeline.cool_down)."""
        self._live = False
        for p in list(self.pipelines):
            if p is not None:
                p.cool_down()

    def pipeline(self, i: int):
        """Scene i's pipeline, waiting for its load; the one on screen instead when scene i failed to build."""
        if not self._ready[i].is_set():
            log.warning("scene %d is still loading: the picture waits for it", i + 1)
            self._ready[i].wait()
        return self.pipelines[self._stand_in.get(i, i)]

    @property
    def mirror(self):
        return self._mirror

    @mirror.setter
    def mirror(self, value) -> None:
        self._mirror = value
        for p in self.pipelines:
            if p is not None:
                p.mirror = value

    @property
    def link(self):
        return self._link

    @link.setter
    def link(self, value) -> None:
        self._link = value
        for p in self.pipelines:
            if p is not None:
                p.link = value

    def _enter(self, i: int) -> None:
        """Scene i takes over: the beat carries on from the scene it leaves; stateful filters start afresh."""
        new, old = self.pipeline(i), self.pipelines[self.current]
        new.tempo.set(bpm=old.tempo.bpm, downbeat=old.tempo.downbeat)
        new.reset_filters()
        self.controls.tempo = new.tempo
        self.current = i

    def _fit(self, image):
        from engine import frame_path

        o = self.show.output
        return frame_path.fit(image, self.work_size, o.fit, o.background)  # [1, 3, H, W] at the work size

    def generate(self, tick):
        import torch

        from engine.frame import Frame, to_uint8_hwc

        with torch.inference_mode():
            self.controls.frame(tick.t, self)  # the frame's snapshot: its scene commands
            active = self.director.advance(tick.t, self.controls.take_commands())
            if active.scene != self._scene:  # the director moved on: to a scene that may have failed to build
                self.pipeline(active.scene)  # its load is over
                if active.scene in self.failed:
                    self._stand_in[active.scene] = self.current
                self._scene = active.scene
            playing = self._stand_in.get(active.scene, active.scene)
            if playing != self.current:
                self._enter(playing)
            incoming = self.pipeline(active.scene)
            if active.previous is None or self.pipeline(active.previous) is incoming:
                image = self._fit(incoming.generate(tick).image)
                return Frame(tick, image, to_uint8_hwc(image))
            outgoing, tr, u = self.pipeline(active.previous), active.transition, active.progress
            if tr.kind == "glide" and outgoing.show.model_path == incoming.show.model_path:
                own = incoming.walk
                incoming.walk = Glide(outgoing.walk, own, _ease(u))
                try:
                    image = self._fit(incoming.generate(tick).image)
                finally:
                    incoming.walk = own
                return Frame(tick, image, to_uint8_hwc(image))
            with self.times.time("transition"):
                a = self._fit(outgoing.generate(tick).image)  # [1, 3, H, W]
                b = self._fit(incoming.generate(tick).image)  # [1, 3, H, W]
                image = blend(a, b, u, tr)
            return Frame(tick, image, to_uint8_hwc(image))

    def reset_filters(self) -> None:
        for p in self.pipelines:
            if p is not None:
                p.reset_filters()


def blend(a, b, u: float, transition: Transition):
    """Two scenes' frames [1, 3, H, W] at progress u of a transition: crossfade (1 - u) a + u b; fade-through a
    to the colour by u = 0.5, then the colour to b."""
    import torch

    if transition.kind != "fade-through":
        return a * (1 - u) + b * u
    colour = torch.tensor(transition.colour, dtype=a.dtype, device=a.device).view(1, 3, 1, 1)
    if u < 0.5:
        w = 2 * u
        return a * (1 - w) + colour * w
    w = 2 * u - 1
    return colour * (1 - w) + b * w


def build(show: Show, device: str = "auto", controls=None, background: bool = False):
    """The one place a show becomes the loop's frame source: its Pipeline, or a ScenePlayer for a show with
    `[[scene]]` rows; either reads `controls` (an engine.timeline.Controls: timed cues, fades, quantise)."""
    from engine import timeline
    from engine.pipeline import Pipeline, make_bus

    controls = controls if controls is not None else timeline.Controls(show, make_bus(show))
    if not show.scenes:
        pipeline = Pipeline(show, device, controls.view())
        controls.tempo = pipeline.tempo
        return pipeline
    return ScenePlayer(show, device, controls, background)
