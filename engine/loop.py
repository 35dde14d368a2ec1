"""The one loop: tick -> walk -> generate -> composite -> present / write.

Live: a realtime clock; the producer thread generates ahead and the display blends the two newest
frames. Lockstep (headless runs and tests): a fixed-step clock; every tick waits for its own frame.
Offline render: lockstep with no window, writing every frame to a file sink; generation, compositing with
asynchronous read-back and encoding overlap (engine/offline.py), the same frames as one after the other.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine import frame_texture, offline, scenes, sinks, timeline
from engine.clock import FixedStep, Realtime
from engine.compositor import Compositor, Trail, headless_context
from engine.controls import mirror
from engine.controls.record import Recording
from engine.controls.state import AudioFeed, MidiFileFeed
from engine.errors import MasqueradeError
from engine.frame import Tick
from engine.inputs import open_inputs
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
    control: Path | None = None  # the kiosk's control file: it switches shows in this process (engine/switch.py)


def make_compositor(ctx, show: Show, size, pipeline: Pipeline) -> Compositor:
    """The GL stage for `pipeline`'s frames, with the frame upload chosen for this context and device (logged): on
    CUDA-OpenGL interop the pipeline's frames stay on the GPU."""
    o = show.output
    upload = frame_texture.choose(ctx, pipeline.work_size, pipeline.device)
    pipeline.frames_on_device = upload.on_device
    return Compositor(ctx, size, pipeline.work_size, fit=o.fit, upscale=o.upscale, background=o.background,
                      upload=upload)


@dataclass
class LiveRun:
    frames: int  # frames presented
    seconds: float  # wall time of the loop itself (setup excluded)
    stage_ms: dict[str, float]  # smoothed time per frame of each stage
    sinks: dict[str, Report] = field(default_factory=dict)  # frames written and dropped, per live sink


def run_live(show: Show, opts: LiveOptions) -> LiveRun:
    """Play a show until quit (window) or for `opts.frames` frames (headless)."""
    controls = timeline.Controls(show, make_bus(show), record=opts.record is not None, feeds=show_time_feeds(show))
    pipeline = scenes.build(show, opts.device, controls, background=not opts.headless)  # a Pipeline, or a ScenePlayer
    switcher = None
    if opts.control is not None:  # a kiosk engine: shows switch inside this process, cross-fading
        from engine.switch import Switcher

        pipeline = switcher = Switcher(show, pipeline, controls, opts.control, opts.device, show_time_feeds)
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
    inputs = open_inputs(show, controls.bus, opts.osc_port, None if opts.headless else clock.time,
                         pipeline.work_size)  # OSC, OSCQuery, MIDI learn, camera, audio, MIDI, DMX
    pipeline.mirror = inputs.mirror  # mirror mode reads the picture the camera's features are computed on
    if switcher is not None:  # a switch points them at the incoming show's bus, or reopens them for its settings
        switcher.inputs = inputs
        switcher.reopen = lambda show, bus: open_inputs(show, bus, opts.osc_port, clock.time, pipeline.work_size)
    if show.tempo.link:  # live only: Link's beat runs on its own clock, not show time
        from engine.controls.tempo import LinkClock

        pipeline.link = LinkClock(show.tempo.bpm, show.tempo.beats_per_bar).start()
        if pipeline.link.state != "connected":
            log.warning("tempo.link: %s; the show keeps its own tempo", pipeline.link.reason)
    outputs = live_outputs(show, opts, surface.size)
    readback = offline.LiveReadback(outputs)  # the sinks' frames: read back off the render thread's way
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
            if switcher is not None:  # a switch may have reopened them for the incoming show's settings
                inputs = switcher.inputs
            if "learn" in actions:
                inputs.learn.toggle()
            if "pause" in actions:
                clock.toggle_pause()
            if "fullscreen" in actions:
                readback.flush()  # its buffers belong to the GL context the toggle replaces
                surface.toggle_fullscreen()  # a new GL context: rebuild what draws into it
                compositor = make_compositor(surface.ctx, show, surface.size, pipeline)

            with pipeline.times.time("wait"):
                if opts.headless:
                    older = newer = producer.wait_for(tick)
                    mix = 1.0
                else:
                    older, newer, mix = _realtime_frames(producer, tick)
            if switcher is not None:  # the show may have changed: its controls, and maybe its work size
                show, controls = switcher.show, switcher.controls
                older = older if older.rgb.shape == newer.rgb.shape else newer
                if newer.rgb.shape[1::-1] != tuple(compositor.source):  # (the readback sees the new one and
                    #                                                          hands on the old one's frame first)
                    compositor = switcher.compositor_for(surface.ctx, surface.size, newer, compositor)
            with pipeline.times.time("composite"):
                compositor.draw(older, newer, mix, trail_of(controls.bus))  # blend, upscale, trail into .fbo
            if "still" in actions:
                save_still(compositor, opts.stills, show, tick)
            if outputs:
                with pipeline.times.time("write"):  # each sink has its own thread: this only hands a frame on
                    readback.offer(compositor, tick)
            with pipeline.times.time("present"):
                surface.present(compositor.fbo, _stats_line(pipeline, producer) if opts.stats else "")
            shown += 1
            if switcher is not None:
                switcher.presented()
            if opts.heartbeat is not None and time.monotonic() - beat[1] >= 1.0:
                now = time.monotonic()
                fps = (shown - beat[0]) / (now - beat[1]) if beat[0] else 0.0
                thumbnail = None
                if now - thumbnail_at >= THUMBNAIL_EVERY:
                    thumbnail, thumbnail_at = write_thumbnail(opts.heartbeat.with_suffix(".jpg"), compositor), now
                state = {**live_state(inputs.devices, inputs.receiver, controls.bus, thumbnail),
                         "learn": inputs.learn.state()}
                if switcher is not None:  # its own show time, the switches, the scene
                    state.update(switcher.report())
                write_heartbeat(opts.heartbeat, show, switcher.local(tick) if switcher else tick, shown, fps,
                                pipeline.times.mean_ms, state)
                beat = (shown, now)

            if "quit" in actions:
                break
            if opts.stats and time.monotonic() - last_log >= 1.0:
                log.info("frame %d  t=%.2fs  %s", tick.index, tick.t, _stats_line(pipeline, producer))
                last_log = time.monotonic()
        if opts.headless and not outputs and shown:  # something to look at after a headless run
            save_still(compositor, opts.stills, show, tick)
        readback.flush()
        seconds = time.perf_counter() - started
        return LiveRun(shown, seconds, dict(pipeline.times.mean_ms), outputs.close())
    finally:
        producer.close()
        try:
            readback.flush()  # an error mid-run: the frames in flight still reach the sinks
        except Exception:  # noqa: BLE001 - the GL may be what failed; the run's own error is the one to see
            log.debug("frames in flight could not be read back", exc_info=True)
        if switcher is not None:
            switcher.close()
        (switcher.inputs if switcher is not None else inputs).close()
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
        feeds.append(Feed(f"--out {opts.out}", sinks.for_path(opts.out, fps, size), lossless=opts.headless))
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
    if receiver is not None:  # every counter docs/osc.md lists: the receiver's, and the bus's
        state["osc"] = {"port": receiver.port, **dataclasses.asdict(receiver.stats)}
    state["bus"] = dataclasses.asdict(bus.stats)
    snap = bus.latest
    if snap is not None and "scene.cue" in bus.ever_fired:  # its default (1) is no cue fired
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
    return trail_at(bus.latest)


def trail_at(snap) -> Trail | None:
    """The video-feedback values in one bus snapshot (None: none taken yet)."""
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


def camera_feeds(show: Show) -> list:
    """A render's camera: a video file read at show time (frame i of the render sees the file's frame at
    i / fps, features computed on every file frame in order, as a camera at the file's rate would), so it
    steers the render frame-exact. A live camera (a device, a stream) cannot be rendered: one warning."""
    cam = show.camera
    if not cam.enabled:
        return []
    source = cam.device(show)
    if isinstance(source, str) and "://" not in source and os.path.isfile(source):
        from engine.controls.camera import FileFeed
        from engine.controls.source import DeviceLost

        try:
            return [FileFeed(source, loop=cam.loop)]
        except DeviceLost as e:
            raise MasqueradeError(f"{show.source or '<show>'}: {e}") from None
    if isinstance(source, int) or "://" in source:
        log.warning("camera.source %r is a live camera: a render cannot read it, so its camera:* sources stay "
                    "at rest (give a video file to steer a render)", cam.source)
    else:
        log.warning("camera.source %s: no such file; its camera:* sources stay at rest", source)
    return []


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


class RenderInterrupted(MasqueradeError):
    """A render stopped by a signal between frames: `done` of `total` frames written; `kept` is the partial
    file (or folder) holding them, None when nothing was kept."""

    def __init__(self, done: int, total: int, kept: Path | None):
        self.done, self.total, self.kept = done, total, kept
        where = f"the frames so far are in {kept}" if kept else "nothing was kept"
        super().__init__(f"interrupted at frame {done} of {total}; {where}")


class OutputError(MasqueradeError):
    """The render's file could not be written (a full disk, a folder gone read-only)."""


def length(show: Show) -> float:
    """How many seconds a render of the whole piece takes (engine/scenes.py end_of); a show that plays for ever
    is a MasqueradeError asking for --seconds."""
    end = scenes.end_of(show)
    if end is None:
        why = ("its scenes loop ([timeline] loop = false ends it after the last)" if show.timeline.loop else
               "a scene plays until cued") if show.scenes else "it has no [[scene]] durations or timed cues"
        raise MasqueradeError(f"{show.source or '<show>'}: this show plays for ever ({why}): give --seconds N "
                              "to render N seconds of it")
    if end <= 0:
        raise MasqueradeError(f"{show.source or '<show>'}: this show ends at 0 s: give --seconds N")
    return end


def render(show: Show, out: Path, seconds: float | None, size=None, fps: float | None = None,
           device: str = "auto", progress: bool = True, replay: Path | None = None, stop=None,
           overlap: bool = True, batch: int | None = None) -> int:
    """Offline, frame-exact: frame i is the show at t = i / fps, whatever the machine's speed; with
    `replay`, a recorded set's control events are applied at their show times.

    The output is opened first (a folder that cannot be written fails before the model loads) and written
    beside its name, which it takes only once complete. `stop` (a threading.Event, set by a signal handler)
    ends the render between frames: RenderInterrupted, the frames so far kept in the partial file. A write
    that fails is OutputError, the partial file removed. `overlap`: generation, compositing with asynchronous
    read-back and encoding run at once (engine/offline.py); False: one after the other, the same frames. `batch`:
    frames of show time generated at once (None: offline.choose_batch's; a stateful filter makes it 1, logged)."""
    from tqdm import tqdm

    fps = fps or show.output.fps
    size = size or show.output.size
    seconds = length(show) if seconds is None else seconds  # None: the whole piece, to its end
    total = max(1, round(seconds * fps))
    sink = sinks.for_path(out, fps, size)
    state = offline.Progress()  # frames written; writing: inside the sink, where an OSError is the output's
    try:
        feeds = show_time_feeds(show) + camera_feeds(show)
        recording = Recording.load(replay) if replay else None
        pipeline = scenes.build(show, device, timeline.Controls(show, make_bus(show), replay=recording, feeds=feeds))
        ctx, bar = headless_context(), None
        try:
            pipeline.mirror = mirror.for_render(show)  # a camera video file, read at show time
            compositor = make_compositor(ctx, show, size, pipeline)
            clock = FixedStep(fps)
            bar = tqdm(total=total, disable=not progress, unit="frame", desc=f"render {out.name}")

            def draw(tick):  # the frame, and its trail: the bus's snapshot taken by that very frame
                return pipeline.generate(tick), trail_of(pipeline.controls.bus)

            def draw_many(ticks):  # a batch of frames, each with the trail of its own snapshot
                return [(frame, trail_at(latest)) for frame, latest in pipeline.generate_batch(ticks)]

            batch = offline.choose_batch(pipeline, batch)
            frames = offline.overlapped if overlap else offline.one_by_one
            if not frames(draw_many if batch > 1 else draw, (clock.at(i) for i in range(total)), compositor, sink,
                          state, stop, bar, pipeline.times, batch=batch):
                raise RenderInterrupted(state.done, total, None)
        finally:
            if bar is not None:
                bar.close()  # the bar's line ends here, not under the message that follows
            ctx.release()
        state.writing = True
        sink.close()
    except (RenderInterrupted, KeyboardInterrupt):
        raise RenderInterrupted(state.done, total, sink.interrupt(keep=True)) from None
    except OSError as e:
        sink.interrupt(keep=False)
        if not state.writing:
            raise
        raise OutputError(f"{e.filename or out}: {e.strerror or e}; the partial file was removed") from None
    except BaseException:
        sink.interrupt(keep=False)
        raise
    if show.audio.is_file(show) and isinstance(sink, VideoWriter):
        mux_audio(out, show.resolve(show.audio.source))
    log.info("rendered %d frames to %s  (%s)", total, out, pipeline.times.summary())
    return total
