"""The one loop: tick -> walk -> generate -> composite -> present / write.

Live: a realtime clock; the producer thread generates ahead and the display blends the two newest
frames. Lockstep (headless runs and tests): a fixed-step clock; every tick waits for its own frame.
Offline render: lockstep with no window, writing every frame to a file sink.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine import sinks
from engine.clock import FixedStep, Realtime
from engine.compositor import Compositor, Trail, headless_context
from engine.controls import mirror
from engine.controls.record import Recording
from engine.controls.state import AudioFeed, ControlState, MidiFileFeed
from engine.errors import MasqueradeError
from engine.frame import Tick
from engine.pipeline import Pipeline, make_bus
from engine.producer import Producer, blend_weight
from engine.show import Show
from engine.sinks.live import Feed, Outputs, Report
from engine.sinks.video import Writer as VideoWriter
from engine.sinks.video import mux_audio

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
    osc_port: int | None = None  # None: the show's [osc] port; 0: any free port
    record: Path | None = None  # save every control event with its show time here (JSON lines)
    heartbeat: Path | None = None  # write a JSON heartbeat here about once a second (installation/ watches it)
    start_at: float = 0.0  # show time of the first frame (a restarted kiosk engine resumes its show there)
    cue: int | None = None  # fire this scene cue on the first frame, as /masq/scene/cue N would
    sinks: tuple = ()  # (kind, row) outputs from `--sink KIND[:VALUE]`, besides the show's [[sinks]] rows


def make_compositor(ctx, show: Show, size, pipeline: Pipeline) -> Compositor:
    o = show.output
    res = pipeline.resolution
    return Compositor(ctx, size, (res, res), fit=o.fit, upscale=o.upscale, background=o.background)


@dataclass
class LiveRun:
    frames: int  # frames presented
    seconds: float  # wall time of the loop itself (setup excluded)
    stage_ms: dict[str, float]  # smoothed time per frame of each stage
    sinks: dict[str, Report] = field(default_factory=dict)  # frames written and dropped, per live sink


def run_live(show: Show, opts: LiveOptions) -> LiveRun:
    """Play a show until quit (window) or for `opts.frames` frames (headless)."""
    controls = ControlState(make_bus(show), record=opts.record is not None, feeds=show_time_feeds(show))
    pipeline = Pipeline(show, opts.device, controls)
    size = opts.size or show.output.size
    if opts.headless:  # lockstep: every tick waits for its own frame, so output is frame-exact
        surface, clock = Offscreen(size), FixedStep(show.output.fps, round(opts.start_at * show.output.fps))
        frames_total = opts.frames if opts.frames is not None else round(10 * show.output.fps)
    else:
        from engine.window import Window

        surface = Window(size, opts.fullscreen, opts.display, title=f"Masquerade: {show.name}")
        clock, frames_total = Realtime(start=opts.start_at), opts.frames
        share_cores_with_software_gl(surface.ctx, pipeline.device)
    if opts.cue is not None:
        controls.bus.post("osc:/masq/scene/cue", float(opts.cue))
    producer = Producer(pipeline)
    receiver = start_osc(show, controls.bus, opts.osc_port, None if opts.headless else clock.time)
    devices = []  # live inputs: each runs in its own thread, never raises, reports loss and reconnects
    if show.audio.enabled and not show.audio.is_file(show):
        from engine.controls.audio import AudioSource

        devices.append(AudioSource(controls.bus, None if show.audio.source == "default" else show.audio.source))
    if show.camera.enabled:
        from engine.controls.camera import Camera

        camera = Camera(controls.bus, show.camera.device(show), loop=show.camera.loop,
                        mirror_width=max(320, 2 * pipeline.generator.resolution))
        pipeline.mirror = mirror.live(camera)  # mirror mode reads the picture the features are computed on
        devices.append(camera)
    if show.midi.port:
        from engine.controls.midi import MidiInput

        devices.append(MidiInput(controls.bus, None if show.midi.port == "any" else show.midi.port))
    for device in devices:
        device.start()
    if show.tempo.link:  # live only: Link's beat runs on its own clock, not show time
        from engine.controls.tempo import LinkClock

        pipeline.link = LinkClock(show.tempo.bpm, show.tempo.beats_per_bar).start()
        if pipeline.link.state != "connected":
            log.warning("tempo.link: %s; the show keeps its own tempo", pipeline.link.reason)
    outputs = live_outputs(show, opts, surface.size)
    compositor = make_compositor(surface.ctx, show, surface.size, pipeline)
    log.info("playing %s on %s (%s %dx%d, model %s)", show.name, pipeline.device, type(surface).__name__.lower(),
             *surface.size, show.model_path.name)
    shown, last_log, started = 0, time.monotonic(), time.perf_counter()
    beat = (0, float("-inf"))  # (frames, monotonic time) of the last heartbeat: the first frame writes one
    thumbnail_at = float("-inf")  # monotonic time of the last thumbnail beside the heartbeat
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
                compositor.draw(older, newer, mix, trail_of(controls.bus))  # blend, upscale, trail into .fbo
            if "still" in actions:
                save_still(compositor, opts.stills, show, tick)
            if outputs:
                with pipeline.times.time("write"):  # each sink has its own thread: this only hands the frame on
                    outputs.offer(compositor.read(), tick)
            with pipeline.times.time("present"):
                surface.present(compositor.fbo, _stats_line(pipeline, producer) if opts.stats else "")
            shown += 1
            if opts.heartbeat is not None and time.monotonic() - beat[1] >= 1.0:
                now = time.monotonic()
                fps = (shown - beat[0]) / (now - beat[1]) if beat[0] else 0.0
                thumbnail = None
                if now - thumbnail_at >= THUMBNAIL_EVERY:
                    thumbnail, thumbnail_at = write_thumbnail(opts.heartbeat.with_suffix(".jpg"), compositor), now
                write_heartbeat(opts.heartbeat, show, tick, shown, fps, pipeline.times.mean_ms,
                                live_state(devices, receiver, controls.bus, thumbnail))
                beat = (shown, now)

            if "quit" in actions:
                break
            if opts.stats and time.monotonic() - last_log >= 1.0:
                log.info("frame %d  t=%.2fs  %s", tick.index, tick.t, _stats_line(pipeline, producer))
                last_log = time.monotonic()
        if opts.headless and not outputs and shown:  # something to look at after a headless run
            save_still(compositor, opts.stills, show, tick)
        seconds = time.perf_counter() - started
        return LiveRun(shown, seconds, dict(pipeline.times.mean_ms), outputs.close())
    finally:
        producer.close()
        if receiver is not None:
            receiver.stop()
        for device in devices:
            device.stop()
        if pipeline.link is not None:
            pipeline.link.stop()
        outputs.close()  # once: a normal end has closed them already
        surface.close()
        if opts.record is not None:
            log.info("recorded %d control events to %s", len(controls.bus.recording),
                     controls.bus.recording.save(opts.record))


SOFTWARE_GL = ("llvmpipe", "softpipe", "swrast", "lavapipe")


def share_cores_with_software_gl(ctx, device) -> None:
    """With the GL on the CPU (Mesa llvmpipe: no GPU, or a VM), torch on every core fights the rasteriser
    for them and both slow down: on 2 cores the model ran at 5 fps with 2 torch threads and 20 fps with 1
    (docs/performance.md). Leave the rasteriser a core, unless the user chose a thread count."""
    renderer = ctx.info.get("GL_RENDERER", "").lower()
    if device.type != "cpu" or not any(name in renderer for name in SOFTWARE_GL):
        return
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MASQUERADE_TORCH_THREADS"):
        return
    threads = max(1, (os.cpu_count() or 1) - 1)
    if threads < torch.get_num_threads():
        torch.set_num_threads(threads)
        log.info("software GL (%s): torch uses %d thread(s), leaving the rasteriser a core", renderer, threads)


def live_outputs(show: Show, opts: LiveOptions, size: tuple[int, int]) -> Outputs:
    """The run's sinks, each on its own feed: `--out` (headless), then the show's `[[sinks]]` rows. A sink
    that cannot work here is logged in one line and left out: the show goes on with the others. In lockstep
    (headless) runs, file sinks keep every frame; everything else drops frames rather than wait."""
    fps, feeds = show.output.fps, []
    if opts.out:
        feeds.append(Feed(f"--out {opts.out}", sinks.for_path(opts.out, fps), lossless=opts.headless))
    rows = [(f"--sink {kind}", kind, args) for kind, args in opts.sinks]
    rows += [(row.where, row.kind, row.args) for row in show.sinks]
    for where, kind, args in rows:
        try:
            sink = sinks.open_sink(kind, args, size, fps)
        except (sinks.Unavailable, ValueError) as e:  # no driver here, or a value this output cannot take
            log.error("%s is off for this run: %s", where, e)
            continue
        feeds.append(Feed(where, sink, lossless=opts.headless and kind in FILE_SINKS))
    return Outputs(feeds)


FILE_SINKS = ("video", "images")


def write_heartbeat(path: Path, show: Show, tick: Tick, shown: int, fps: float, stage_ms: dict,
                    state: dict | None = None) -> None:
    """The kiosk supervisor's proof of life: one JSON object, replaced atomically so a reader never sees
    half of it. A write that fails (disk full) is logged and the show goes on; the supervisor decides.
    `state`: more to report (live_state: devices, OSC, presence, the scene cue, the thumbnail)."""
    data = {"pid": os.getpid(), "time": time.time(), "frames": shown, "index": tick.index, "t": round(tick.t, 4),
            "fps": round(fps, 2), "show": show.name, "source": str(show.source) if show.source else None,
            "stage_ms": {name: round(ms, 3) for name, ms in stage_ms.items()}, **(state or {})}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        log.warning("heartbeat %s not written: %s", path, e)


THUMBNAIL_EVERY = 3.0  # seconds between thumbnails of the presented frame beside the heartbeat


def live_state(devices: list, receiver, bus, thumbnail: str | None) -> dict:
    """What a status page shows besides frames: each device's state and counters, the OSC receiver's
    counters, camera presence (None without a camera), the last scene cue fired (None: none yet)."""
    state: dict = {"devices": {}, "presence": None, "osc": None, "cue": None}
    for device in devices:
        s = device.stats
        state["devices"][device.kind] = {"state": device.state, "reason": device.reason, "connects": s.connects,
                                         "losses": s.losses, "reads": s.reads}
        features = getattr(device, "features", None)
        if device.kind == "camera" and features:
            state["presence"] = features.get("presence")
    if receiver is not None:
        st = receiver.stats
        state["osc"] = {"port": receiver.port, "packets": st.packets, "posted": st.posted, "malformed": st.malformed,
                        "rate_limited": st.rate_limited, "disallowed": st.disallowed, "bad_args": st.bad_args}
    snap = bus.latest
    if snap is not None and "scene.cue" in bus.params and snap["scene.cue"] >= 1:
        state["cue"] = int(snap["scene.cue"])
    if thumbnail is not None:
        state["thumbnail"] = thumbnail
    return state


def write_thumbnail(path: Path, compositor: Compositor, width: int = 320) -> str | None:
    """A small JPEG of the presented frame, replaced atomically; its file name, None when not written."""
    from PIL import Image

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        image = Image.fromarray(compositor.read())
        image.thumbnail((width, width))
        image.save(tmp, format="JPEG", quality=75)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("thumbnail %s not written: %s", path, e)
        tmp.unlink(missing_ok=True)
        return None
    return path.name


def trail_of(bus) -> Trail | None:
    """The video-feedback values of the frame being presented: the bus's newest snapshot, taken by the
    frame's own generation (lockstep and renders: exactly this frame's; live: the newest generated one)."""
    snap = bus.latest
    if snap is None:
        return None
    return Trail(snap["output.trail"], snap["output.trail_zoom"], snap["output.trail_rotate"],
                 snap["output.trail_fade"])


def show_time_feeds(show: Show) -> list:
    """Files that drive the show as pure functions of show time, live and offline alike (an audio file,
    a MIDI file); live devices (microphone, MIDI port, camera) are threads started by run_live."""
    feeds = []
    if show.audio.is_file(show):
        feeds.append(AudioFeed(show.resolve(show.audio.source)))
    if show.midi.file:
        feeds.append(MidiFileFeed(show.resolve(show.midi.file)))
    return feeds


def start_osc(show: Show, bus, port: int | None, show_time=None):
    """The show's OSC receiver, started; None when the show turns OSC off. A port that cannot be
    opened is logged and the show goes on without OSC: a kiosk must not go dark for it."""
    from engine.controls.osc import Receiver, parse_address, show_time_from_unix

    osc = show.osc
    if not osc.enabled:
        return None
    receiver = Receiver(bus, osc.host, osc.port if port is None else port, osc.allow, osc.max_per_second,
                        feedback=parse_address(osc.feedback) if osc.feedback else None,
                        to_show_time=show_time_from_unix(show_time) if show_time else None)
    try:
        receiver.start()
    except MasqueradeError as e:
        log.error("OSC is off for this run: %s", e)
        return None
    return receiver


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
    """Ask for the frame the display will need next, and blend the two newest that are ready.

    A generation that fails is logged and the display goes on with the frames it has: a kiosk shows
    the last good picture rather than going dark. Only a model that never produced a frame is fatal."""
    while True:
        error = producer.take_error()
        if error is not None:
            if not producer.latest() and producer.failures >= 3:
                raise error
            if producer.failures <= 3 or producer.failures % 100 == 0:
                log.error("frame generation failed (%d so far); the show goes on with the last frames",
                          producer.failures, exc_info=error)
        if producer.idle:
            lead = 2 * producer.seconds_per_frame  # see docs/architecture.md: blending without stutter
            producer.request(Tick(tick.index, tick.t + lead))
        frames = producer.latest()
        if frames:
            return frames[0], frames[-1], blend_weight(frames, tick.t)
        time.sleep(0.005)  # the very first frame: nothing to show yet


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
           device: str = "auto", progress: bool = True, replay: Path | None = None) -> int:
    """Offline, frame-exact: frame i is the show at t = i / fps, whatever the machine's speed; with
    `replay`, a recorded set's control events are applied at their show times."""
    from tqdm import tqdm

    fps = fps or show.output.fps
    size = size or show.output.size
    recording = Recording.load(replay) if replay else None
    pipeline = Pipeline(show, device, ControlState(make_bus(show), replay=recording, feeds=show_time_feeds(show)))
    ctx = headless_context()
    pipeline.mirror = mirror.for_render(show)  # a camera video file, read at show time
    compositor = make_compositor(ctx, show, size, pipeline)
    clock = FixedStep(fps)
    total = round(seconds * fps)
    sink = sinks.for_path(out, fps)
    try:
        for i in tqdm(range(total), disable=not progress, unit="frame", desc=f"render {out.name}"):
            tick = clock.at(i)
            frame = pipeline.generate(tick)
            with pipeline.times.time("composite"):
                compositor.draw(frame, frame, 1.0, trail_of(pipeline.controls.bus))
            with pipeline.times.time("write"):
                sink.write(compositor.read(), tick)
    finally:
        sink.close()
        ctx.release()
    if show.audio.is_file(show) and isinstance(sink, VideoWriter):
        mux_audio(out, show.resolve(show.audio.source))
    log.info("rendered %d frames to %s  (%s)", total, out, pipeline.times.summary())
    return total
