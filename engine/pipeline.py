"""Show time -> image: walk, generator, super-resolution, mirror and filters (in the order and at the sizes
`engine/frame_path.py` decides), on the chosen device.

This is the pure part of a frame: `generate(tick)` depends only on the tick and the show, so the
live loop, offline renders and tests all call it and get the same pixels.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import torch

from engine import filters, frame_path, walks
from engine.controls import mirror
from engine.controls.bus import Bus, declare_all
from engine.controls.state import ControlState, TempoFeed
from engine.controls.tempo import Tempo
from engine.errors import MasqueradeError
from engine.frame import Frame, Tick, check_image, quantise, to_uint8_hwc
from engine.generators import importers
from engine.generators.speed import Speed, SpeedError, accelerate
from engine.latent.steer import Steer
from engine.show import MIN_WORK_SIDE, FilterStage, Show, ShowError, control_params
from engine.stats import StageTimes
from engine.style import Styler
from engine.walks.keyframes import slerp

log = logging.getLogger(__name__)


class DeviceError(MasqueradeError):
    pass


def make_bus(show: Show) -> Bus:
    """The show's params and bindings on a fresh bus (checked when the show was loaded)."""
    return declare_all(Bus(), control_params(show), show.bindings)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():  # one line, and the show goes on: the CPU and host path
        log.warning("--device cuda: no CUDA device is available to PyTorch here; running on the CPU")
        return torch.device("cpu")
    if name not in ("cpu", "cuda"):
        raise DeviceError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


class Pipeline:
    def __init__(self, show: Show, device: str = "auto", controls: ControlState | None = None, loaded=None):
        """`loaded`: the model already read (an `importers.Loaded`, this pipeline's own copy), for callers
        that build many pipelines of one show (a Ray worker rendering chunk after chunk)."""
        self.show = show
        self.controls = controls or ControlState(make_bus(show))
        self.device = resolve_device(device)
        if not show.model_path.is_file():
            raise ShowError(f"{show.source or '<show>'}: model.path: {show.model_path}: no such model file")
        loaded = loaded or importers.load(show.model_path)  # ours, or any foreign format; never runs code
        self.generator, self.card = loaded.module.to(self.device).eval().requires_grad_(False), loaded.card
        where = str(show.source or "<show>")
        m = show.model
        try:
            accelerate(self.generator, self.device, Speed(m.precision, m.compile, m.cuda_graphs))
        except SpeedError as e:
            raise ShowError(f"{where}: [model] {e}") from None
        self.styler = Styler(self.generator, show.style, where, show.bindings,
                             classes=show.walk.options.get("classes")).to(self.device)
        w = show.walk
        self.walk = walks.create(w.kind, z_dim=self.generator.z_dim, seed=w.seed, **w.options)
        # walk.energy leans the walk toward a second, never-repeating one: how far it strays from its path
        self.wander = walks.create("drift", z_dim=self.generator.z_dim, seed=w.seed + 1)
        marks = show.resolve(show.latent.bookmarks) if show.latent.bookmarks else None
        try:
            self.steer = Steer(show.latent, self.generator, show.model_path, marks)
        except MasqueradeError as e:
            raise ShowError(f"{where}: latent.bookmarks: {e}") from None
        self.cues = {cue.number: cue for cue in show.cues}
        for cue in show.cues:
            if cue.latent:
                try:
                    self.steer.check(cue.latent, cue.where)
                except MasqueradeError as e:
                    raise ShowError(str(e)) from None
        tempo = show.tempo
        self.tempo = Tempo(tempo.bpm, tempo.downbeat, tempo.beats_per_bar)
        self._bpm_param = tempo.bpm  # the last tempo.bpm the bus gave: a change of it sets the tempo
        self._beat_feed = TempoFeed(self.tempo)
        self._beat_bound = any(b.source.startswith("tempo:") for b in self.controls.bus.bindings)  # else unposted
        self.link = None  # a started controls.tempo.LinkClock (live runs with [tempo] link = true)
        self.filters = [self._build_filter(stage) for stage in show.filters]
        self.controls_of = [list(stage.controls()) for stage in show.filters]  # each filter's live params
        # the order of the stages and the size of each one's frame (engine/frame_path.py): filters at the work size
        def replan(work_size):
            return frame_path.plan(self.generator.resolution, self.filters, [s.name for s in show.filters], work_size)
        # a work size the device cannot hold: the largest that fits, with one warning (engine/frame_path.py)
        self.path = frame_path.largest_that_fits(replan(show.output.work_size), replan, self._probe, MIN_WORK_SIDE,
                                                 where, self.device)
        self.times = StageTimes()
        self.mirror = None  # mirror mode: t -> camera picture (H, W, 3) RGB uint8 or None (engine/controls/mirror.py)
        self.frames_on_device = False  # Frame.rgb stays a CUDA tensor: the compositor uploads it by CUDA-OpenGL interop
        # generate_batch: the filters on the whole batch (CUDA: throughput), or frame by frame (CPU: a batch is no
        # faster there, docs/performance.md, and the frames stay bit-identical to one-by-one)
        self.batch_filters = self.device.type == "cuda"

    @torch.inference_mode()
    def _probe(self, path) -> None:
        """The stages after the generator on one mid-grey frame, the filters at their params' defaults: the
        memory a frame of `path` needs, found before the first frame. Stateful filters forget it."""
        r, o, params = self.generator.resolution, self.show.output, self.controls.bus.params
        image = torch.full((1, 3, r, r), 0.5, device=self.device)
        for stage in path.stages:
            if stage.kind == "fit":
                image = frame_path.fit(image, stage.size, o.fit, o.background)
            elif stage.kind in ("upscale", "filter"):
                f, row = self.filters[stage.row], self.show.filters[stage.row]
                image = f(image, **{k: params[f"filter.{row.name}.{k}"].default for k in self.controls_of[stage.row]})
        self.reset_filters()

    def _build_filter(self, stage: FilterStage):
        """A `[[filters]]` row as a module on the device; any complaint names the row."""
        args = dict(stage.args)
        if "path" in args:
            args["path"] = self.show.resolve(str(args["path"]))
            if not args["path"].is_file():
                raise ShowError(f"{stage.where}: weights file {args['path']} is missing")
        try:
            module = filters.create(stage.kind, **args)
        except TypeError as e:  # an argument the filter does not take
            raise ShowError(f"{stage.where}: {e}") from None
        except (ValueError, OSError) as e:
            raise ShowError(f"{stage.where}: {e}") from None
        return module.to(self.device).eval()

    def warm_up(self) -> None:
        """Live shows: the compiled generator (`[model] compile`, engine/generators/speed.py) builds in a
        background thread while the eager one draws, and takes over once it makes the same frame."""
        if self.generator.compiled is not None:
            self.generator.compiled.start()

    def cool_down(self) -> None:
        """The pipeline is dropped (a kiosk switched away): its compiled generator's warm-up, if it has not begun,
        is skipped (speed.Compiled.cancel)."""
        if self.generator.compiled is not None:
            self.generator.compiled.cancel()

    def reset_filters(self) -> None:
        """Stateful filters (feedback, temporal smoothing) forget the past: after a cut the old frame
        must not bleed into the new one."""
        for f in self.filters:
            if hasattr(f, "reset"):
                f.reset()

    def _derive(self, snap, t: float, walk_time: float):
        """Sources the show derives from this frame's events, applied on this very frame: a cue's values
        (source `cue:<param>`) and the beat (`tempo:*`, after this frame's taps). Neither is recorded; a
        replay derives them again from the recorded cue and tap triggers."""
        cue = None
        if snap.fired("scene.cue"):
            cue = self.cues.get(int(snap["scene.cue"]))
            if cue is None:
                log.info("cue %d is not in the show; ignored", int(snap["scene.cue"]))
        bus = self.controls.bus
        if cue is not None:
            for target, value in cue.set.items():
                bus.post(f"cue:{target}", value, at=t)
        self._beat(snap, t)
        if self._beat_bound:
            self._beat_feed(bus, t)
        if cue is not None or self._beat_bound:
            after = bus.snapshot(t)  # the same show time: derived values apply now, not a frame late
            snap = dataclasses.replace(after, triggers=snap.triggers | after.triggers)
        if cue is not None:
            jump = getattr(self.walk, "jump", None)
            if cue.keyframe and jump is not None:
                walk_time = self.controls.walk_time = jump(walk_time, to=cue.keyframe - 1)
                self.reset_filters()
            if cue.bookmark:
                self.steer.recall(cue.bookmark, t)
            if cue.latent:
                self.steer.recall(cue.latent, t)
        return snap, walk_time

    def _beat(self, snap, t: float) -> None:
        """Tap tempo, the BPM param or an Ableton Link session move the show's beat; beat-locked walks
        follow it."""
        session = self.link.now() if self.link is not None else None
        if session is not None:  # Link leads: its tempo, its beat count placed at this frame's show time
            self.tempo.set(bpm=session["tempo:bpm"])
            self.tempo.set(downbeat=t - session["tempo:beat_count"] * self.tempo.period)
        if snap.fired("tempo.tap"):
            self.tempo.tap(t)
        if snap["tempo.bpm"] != self._bpm_param:
            self._bpm_param = snap["tempo.bpm"]
            beats = self.tempo.beats_at(t)
            self.tempo.set(bpm=self._bpm_param)
            self.tempo.set(downbeat=t - beats * self.tempo.period)  # the beat count carries on
        follow = getattr(self.walk, "follow", None)
        if follow is not None:
            follow(self.tempo.bpm, self.tempo.downbeat)

    def _keyframe_cuts(self, snap, walk_time: float) -> float:
        """OSC keyframe buttons (/masq/keyframe/next, /prev, /index N) cut walks that have keyframes."""
        jump = getattr(self.walk, "jump", None)
        if jump is None:
            return walk_time
        if snap.fired("walk.keyframe"):
            walk_time = jump(walk_time, to=int(snap["walk.keyframe"]) - 1)  # OSC counts keyframes from 1
        elif snap.fired("walk.next_keyframe"):
            walk_time = jump(walk_time, step=1)
        elif snap.fired("walk.prev_keyframe"):
            walk_time = jump(walk_time, step=-1)
        else:
            return walk_time
        self.controls.walk_time = walk_time
        self.reset_filters()
        return walk_time

    @property
    def work_size(self) -> tuple[int, int]:
        """(width, height) of the frames this pipeline hands on: `[output] work_size`, else the generator's
        resolution times every super-resolution row's scale (engine/frame_path.py)."""
        return self.path.work_size

    @property
    def resolution(self) -> int:
        """The larger side of `work_size` (the side, for a square frame)."""
        return max(self.work_size)

    @torch.inference_mode()
    def advance(self, tick: Tick):
        """The control and walk stages of frame `tick`, nothing drawn: (snapshot, walk tick, z [1, z_dim] on
        the device, w_shift [1, w_dim] or None). A render chunk that starts at frame s runs it for frames
        0..s-1, so its controls, cues and walk stand where a render from frame 0 has them."""
        with self.times.time("control"):
            snap, walk_time = self.controls.at(tick.t)  # one consistent snapshot for this frame
            snap, walk_time = self._derive(snap, tick.t, walk_time)  # cues, tap tempo, beats
            walk_time = self._keyframe_cuts(snap, walk_time)
        with self.times.time("walk"):
            locked = getattr(self.walk, "clock", "walk") == "show"
            walk_tick = Tick(tick.index, tick.t if locked else walk_time)
            z = self.walk.step(walk_tick)  # [1, z_dim]
            if snap["walk.energy"] > 0:
                z = slerp(z[0], self.wander.step(walk_tick)[0], 0.5 * snap["walk.energy"])[None]
            if snap.fired("bookmark.recall"):
                self.steer.recall(int(snap["bookmark.recall"]), tick.t)
            z, w_shift = self.steer(z, tick.t, snap)  # bookmarks and directions; w_shift [1, w_dim] or None
            if snap.fired("bookmark.save"):
                self.steer.save(int(snap["bookmark.save"]), z)
            z = z.to(self.device)
        return snap, walk_tick, z, w_shift

    @torch.inference_mode()
    def generate(self, tick: Tick, z: torch.Tensor | None = None) -> Frame:
        """Frame `tick` through the frame path; `z` [1, z_dim]: draw this latent instead of the walk's
        (`masquerade bookmarks still`)."""
        snap, walk_tick, walked, w_shift = self.advance(tick)
        z = walked if z is None else z.to(self.device)
        amount = snap["camera.mirror"] if self.mirror is not None else 0.0
        seen = self.mirror(tick.t) if amount > 0 else None  # the camera's picture, (h, w, 3) uint8, or None
        camera_only = seen is not None and amount >= 1  # the model (and its upscale) need not run
        image, flip = None, self.show.camera.flip
        for stage in self.path.stages:  # generate -> super-resolution -> fit -> mirror -> filters
            if camera_only and stage.kind in ("generate", "upscale", "fit"):
                continue
            if stage.kind == "mirror" and seen is None:
                continue
            with self.times.time(stage.name):
                if stage.kind == "generate":
                    classes = getattr(self.walk, "classes_at", None)  # a class walk's (class, weight) pairs lead
                    label = classes(walk_tick) if classes is not None and self.walk.classes else snap["style.class"]
                    image = self.styler(z, snap["walk.truncation"], label=label, mix=snap["style.mix"],
                                        w_shift=None if w_shift is None else w_shift.to(self.device),
                                        translate=(snap["style.translate_x"], snap["style.translate_y"]),
                                        rotate=snap["style.rotate"])
                    check_image(image)  # [1, 3, R, R] in [0, 1]
                elif stage.kind == "fit":
                    o = self.show.output
                    image = frame_path.fit(image, stage.size, o.fit, o.background)  # [1, 3, H, W]
                elif stage.kind == "mirror":
                    image = mirror.picture(seen, stage.size, self.device, flip) if camera_only \
                        else mirror.apply(image, seen, amount, flip)  # [1, 3, H, W]
                else:  # a row: super-resolution [1, 3, sR, sR], or a filter at the work size [1, 3, H, W]
                    f, row = self.filters[stage.row], self.show.filters[stage.row]
                    image = f(image, **{k: snap[f"filter.{row.name}.{k}"] for k in self.controls_of[stage.row]})
        with self.times.time("quantise"):
            rgb = self.pixels(image)  # R'xR'x3 uint8, quantised on the device
        return Frame(tick, image, rgb)

    def pixels(self, image: torch.Tensor):
        """A frame's uint8 HxWx3 for the compositor: a host array, or the device tensor when frames stay on the GPU."""
        if not self.frames_on_device:
            return to_uint8_hwc(image)
        rgb = quantise(image)
        torch.cuda.current_stream(rgb.device).synchronize()  # whole before the GL thread's stream copies it
        return rgb

    def batch_blocker(self) -> str | None:
        """Why this pipeline must draw its frames one at a time (an offline render's batch falls back to 1), in
        words for the log; None when several frames of show time may go through the generator and filters at once."""
        if self.mirror is not None:
            return "mirror mode reads the camera's picture frame by frame"
        for f, row in zip(self.filters, self.show.filters):
            if filters.stateful(f):
                return f"{row.where}: the {row.kind} filter is stateful (its frame depends on the frames before it)"
        return None

    @torch.inference_mode()
    def generate_batch(self, ticks: list[Tick]) -> list[tuple[Frame, object]]:
        """Consecutive frames `ticks`, as `generate` draws them one by one, but with the generator and the filters
        run once on each run of frames whose controls agree (the controls and the walk still step frame by frame,
        in order): [(Frame, the bus's snapshot after that frame's controls)], in order. Only for a pipeline with no
        `batch_blocker`. The filters see the batch at once only with `batch_filters` (CUDA), else frame by frame.
        A frame's pixels are those of `generate` or within 1/255 of them: a batched convolution may sum in another
        order (docs/performance.md; the default show's DCGAN does not, tests/test_render_batch.py)."""
        assert self.batch_blocker() is None, self.batch_blocker()
        steps = []  # per frame: (tick, snapshot, walk tick, z [1, z_dim], w_shift [1, w_dim] or None, bus.latest)
        for tick in ticks:
            steps.append((tick, *self.advance(tick), self.controls.bus.latest))
        out, start = [], 0
        while start < len(steps):
            key, end = self._batch_key(steps[start]), start + 1
            while end < len(steps) and self._batch_key(steps[end]) == key:
                end += 1
            out += self._draw_run(steps[start:end])
            start = end
        return out

    def _label(self, snap, walk_tick):
        classes = getattr(self.walk, "classes_at", None)  # a class walk's (class, weight) pairs lead
        return classes(walk_tick) if classes is not None and self.walk.classes else snap["style.class"]

    def _batch_key(self, step) -> tuple:
        """What must agree for frames to share one generator and filter call: every control they read but z and
        the direction (w_shift, stacked per frame)."""
        _, snap, walk_tick, _, w_shift, _ = step
        label = self._label(snap, walk_tick)
        label = tuple(map(tuple, label)) if isinstance(label, list | tuple) else label
        rows = tuple(snap[f"filter.{row.name}.{k}"] for row, keys in zip(self.show.filters, self.controls_of)
                     for k in keys)
        return (snap["walk.truncation"], label, snap["style.mix"], snap["style.translate_x"],
                snap["style.translate_y"], snap["style.rotate"], w_shift is None, rows)

    def _draw_run(self, steps) -> list[tuple[Frame, object]]:
        """`generate`'s frame path for n frames at once: [n, 3, R, R] -> ... -> [n, 3, H, W], then one Frame each."""
        n = len(steps)
        _, snap, walk_tick, _, w_shift, _ = steps[0]
        z = torch.cat([s[3] for s in steps])  # [n, z_dim]
        w_shift = None if w_shift is None else torch.cat([s[4] for s in steps]).to(self.device)  # [n, w_dim]
        image = None
        for stage in self.path.stages:  # generate -> super-resolution -> fit -> filters (no mirror: it blocks)
            if stage.kind == "mirror":
                continue
            started = time.perf_counter()
            if stage.kind == "generate":
                image = self.styler(z, snap["walk.truncation"], label=self._label(snap, walk_tick),
                                    mix=snap["style.mix"], w_shift=w_shift,
                                    translate=(snap["style.translate_x"], snap["style.translate_y"]),
                                    rotate=snap["style.rotate"])
                check_image(image)
                assert image.shape[0] == n, f"the generator gave {image.shape[0]} frames for {n} latents"
            elif stage.kind == "fit":
                o = self.show.output
                image = frame_path.fit(image, stage.size, o.fit, o.background)  # [n, 3, H, W]
            else:
                f, row = self.filters[stage.row], self.show.filters[stage.row]
                values = {k: snap[f"filter.{row.name}.{k}"] for k in self.controls_of[stage.row]}
                if self.batch_filters:
                    image = f(image, **values)  # [n, 3, H', W']
                else:
                    image = torch.cat([f(image[i:i + 1], **values) for i in range(n)])  # [n, 3, H', W']
            for _ in range(n):  # per frame, as `generate` reports it
                self.times.add(stage.name, (time.perf_counter() - started) / n)
        out = []
        for i, (tick, *_, latest) in enumerate(steps):
            with self.times.time("quantise"):
                one = image[i:i + 1]  # [1, 3, H, W]
                out.append((Frame(tick, one, self.pixels(one)), latest))
        return out
