"""The one loop: tick -> walk -> generate -> composite -> present / write.

Live: a realtime clock; the producer thread generates ahead and the display blends the two newest
frames. Lockstep (headless runs and tests): a fixed-step clock; every tick waits for its own frame.
Offline render: lockstep with no window, writing every frame to a file sink.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from engine import sinks
from engine.clock import FixedStep, Realtime
from engine.compositor import Compositor, headless_context
from engine.frame import Tick
from engine.pipeline import Pipeline
from engine.producer import Producer, blend_weight
from engine.show import Show

log = logging.getLogger("masquerade")


@dataclass
class LiveOptions:
    device: str = "auto"
    size: tuple[int, int] | None = None  # None: the show's output size
    fullscreen: bool = False
    display: int = 0
    stats: bool = False
    headless: bool = False
    frames: int | None = None  # stop after this many frames (headless default: 10 s of show)
    out: Path | None = None  # headless: write frames here (a folder of PNGs, or a video file)
    stills: Path = Path("stills")


def make_compositor(ctx, show: Show, size, pipeline: Pipeline) -> Compositor:
    o = show.output
    res = pipeline.resolution
    return Compositor(ctx, size, (res, res), fit=o.fit, upscale=o.upscale, background=o.background)


@dataclass
class LiveRun:
    frames: int  # frames presented
    seconds: float  # wall time of the loop itself (setup excluded)
    stage_ms: dict[str, float]  # smoothed time per frame of each stage


def run_live(show: Show, opts: LiveOptions) -> LiveRun:
    """Play a show until quit (window) or for `opts.frames` frames (headless)."""
    pipeline = Pipeline(show, opts.device)
    size = opts.size or show.output.size
    if opts.headless:  # lockstep: every tick waits for its own frame, so output is frame-exact
        surface, clock = Offscreen(size), FixedStep(show.output.fps)
        frames_total = opts.frames if opts.frames is not None else round(10 * show.output.fps)
    else:
        from engine.window import Window

        surface = Window(size, opts.fullscreen, opts.display, title=f"Masquerade: {show.name}")
        clock, frames_total = Realtime(), opts.frames
    producer = Producer(pipeline)
    sink = sinks.for_path(opts.out, show.output.fps) if opts.out else None
    compositor = make_compositor(surface.ctx, show, surface.size, pipeline)
    log.info("playing %s on %s (%s %dx%d, model %s)", show.name, pipeline.device, type(surface).__name__.lower(),
             *surface.size, show.model_path.name)
    shown, last_log, started = 0, time.monotonic(), time.perf_counter()
    try:
        while frames_total is None or shown < frames_total:
            tick = clock.tick()
            actions = surface.events()
            if "pause" in actions:
                clock.toggle_pause()
            if "fullscreen" in actions:
                surface.toggle_fullscreen()  # a new GL context: rebuild what draws into it
                compositor = make_compositor(surface.ctx, show, surface.size, pipeline)

            with pipeline.times.time("wait"):
                if opts.headless:
                    older = newer = producer.wait_for(tick)
                    mix = 1.0
                else:
                    older, newer, mix = _realtime_frames(producer, tick)
            with pipeline.times.time("composite"):
                compositor.draw(older, newer, mix)  # blend + Lanczos upscale into compositor.fbo
            if "still" in actions:
                save_still(compositor, opts.stills, show, tick)
            if sink is not None:
                with pipeline.times.time("write"):
                    sink.write(compositor.read(), tick)
            with pipeline.times.time("present"):
                surface.present(compositor.fbo, _stats_line(pipeline, producer) if opts.stats else "")
            shown += 1

            if "quit" in actions:
                break
            if opts.stats and time.monotonic() - last_log >= 1.0:
                log.info("frame %d  t=%.2fs  %s", tick.index, tick.t, _stats_line(pipeline, producer))
                last_log = time.monotonic()
        if opts.headless and sink is None and shown:  # something to look at after a headless run
            save_still(compositor, opts.stills, show, tick)
        return LiveRun(shown, time.perf_counter() - started, dict(pipeline.times.mean_ms))
    finally:
        producer.close()
        if sink is not None:
            sink.close()
        surface.close()


class Offscreen:
    """The headless stand-in for a window: an EGL context, no events, nothing to flip."""

    def __init__(self, size: tuple[int, int]):
        self.ctx, self.size = headless_context(), size

    def events(self) -> list[str]:
        return []

    def present(self, fbo, overlay_text: str = "") -> None:
        self.ctx.finish()  # count the GL work in this frame's time, as a window's flip would

    def close(self) -> None:
        self.ctx.release()


def _realtime_frames(producer: Producer, tick: Tick):
    """Ask for the frame the display will need next, and blend the two newest that are ready."""
    if producer.idle:
        lead = 2 * producer.seconds_per_frame  # see docs/architecture.md: blending without stutter
        producer.request(Tick(tick.index, tick.t + lead))
    frames = producer.latest()
    while not frames:  # the very first frame: nothing to show yet
        time.sleep(0.005)
        frames = producer.latest()
    mix = blend_weight(frames, tick.t)
    return frames[0], frames[-1], mix


def _stats_line(pipeline: Pipeline, producer: Producer) -> str:
    gen_fps = 1 / producer.seconds_per_frame if producer.seconds_per_frame else 0.0
    return f"model {gen_fps:.0f} fps  {pipeline.times.summary()}"


def save_still(compositor: Compositor, folder: Path, show: Show, tick: Tick) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{show.source.stem if show.source else 'show'}-{tick.index:06d}.png"
    Image.fromarray(compositor.read()).save(path)
    log.info("saved still %s", path)
    return path


def render(show: Show, out: Path, seconds: float, size=None, fps: float | None = None,
           device: str = "auto", progress: bool = True) -> int:
    """Offline, frame-exact: frame i is the show at t = i / fps, whatever the machine's speed."""
    from tqdm import tqdm

    fps = fps or show.output.fps
    size = size or show.output.size
    pipeline = Pipeline(show, device)
    ctx = headless_context()
    compositor = make_compositor(ctx, show, size, pipeline)
    clock = FixedStep(fps)
    total = round(seconds * fps)
    sink = sinks.for_path(out, fps)
    try:
        for i in tqdm(range(total), disable=not progress, unit="frame", desc=f"render {out.name}"):
            tick = clock.at(i)
            frame = pipeline.generate(tick)
            with pipeline.times.time("composite"):
                compositor.draw(frame, frame, 1.0)
            with pipeline.times.time("write"):
                sink.write(compositor.read(), tick)
    finally:
        sink.close()
        ctx.release()
    log.info("rendered %d frames to %s  (%s)", total, out, pipeline.times.summary())
    return total
