"""Offline render on a Ray cluster: `masquerade render show.toml -o piece.mp4 --workers 4 [--ray ADDRESS]`.

A frame is a pure function of show time and control state (docs/architecture.md), so the frame range
splits into chunks that Ray tasks render independently and the driver joins in order, encoding once:
the file is frame-identical to the single-process render's. Each task builds the Pipeline from the show
itself, on a model its worker process read from disk once (`loaded_model`). Control state that
accumulates over the show (walk time integrates `walk.speed`; cues, keyframe
cuts and bookmark glides change it; a replayed set posts its events) is rebuilt exactly: a chunk that
starts at frame s first runs `Pipeline.generate` for frames 0..s-1 with the generator and filters swapped
for a one-pixel stand-in, the same code path as a real frame without the cost of drawing it.

Filters that carry state from frame to frame (feedback, temporal stabilising: those with `reset()`) make
each frame depend on every earlier image, so such a show is refused here with the reason.

A task whose worker process dies is re-run by Ray (`max_retries`); progress counts the whole job.
Ray is an optional extra: pip install 'masquerade[distributed]'.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from engine.errors import MasqueradeError
from engine.show import Show

log = logging.getLogger("masquerade")

RETRIES = 3  # a chunk whose worker dies is re-run this many times before the render fails
_MODELS: dict = {}  # in a worker process: (model file, mtime, size) -> importers.Loaded, read once per process


def loaded_model(show: Show):
    """The show's model for one more chunk: read from disk once per worker process (Ray reuses its
    workers across tasks), then handed out as a copy, since a pipeline wraps its model in place."""
    import copy
    import dataclasses

    from engine.generators import importers

    st = show.model_path.stat()
    key = (str(show.model_path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _MODELS:
        _MODELS.clear()  # one model at a time: a worker serves one render
        _MODELS[key] = importers.load(show.model_path)
    cached = _MODELS[key]
    return dataclasses.replace(cached, module=copy.deepcopy(cached.module))


class DistributedError(MasqueradeError):
    pass


def stateful_filters(show: Show) -> list[str]:
    """Names of the show's filters that remember earlier frames (they have a `reset()`)."""
    from engine import filters

    return [stage.name for stage in show.filters if hasattr(filters.get(stage.kind), "reset")]


def chunks(total: int, workers: int, size: int | None = None) -> list[tuple[int, int]]:
    """[start, stop) frame ranges: about four per worker (a dead worker costs little to re-run), 8..120
    frames each (fewer would spend the time rebuilding pipelines, more would hold much memory)."""
    size = size or min(120, max(8, math.ceil(total / (4 * workers))))
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def catch_up(pipeline, clock, start: int) -> None:
    """Bring the pipeline's control state to where a render from frame 0 has it before frame `start`,
    by running every earlier frame's control and walk stages (the generator and filters left out)."""
    for i in range(start):
        pipeline.advance(clock.at(i))


def render_chunk(show: Show, start: int, stop: int, fps: float, size: tuple[int, int], device: str,
                 recording) -> np.ndarray:
    """Frames [start, stop) of the show as [n, H, W, 3] uint8, exactly as `engine.loop.render` draws them."""
    from engine.clock import FixedStep
    from engine.compositor import headless_context
    from engine.controls import mirror
    from engine.controls.state import ControlState
    from engine.loop import make_compositor, show_time_feeds
    from engine.pipeline import Pipeline, make_bus

    pipeline = Pipeline(show, device, ControlState(make_bus(show), replay=recording, feeds=show_time_feeds(show)),
                        loaded=loaded_model(show))
    pipeline.mirror = mirror.for_render(show)  # a camera video file read at show time: splits like the rest
    clock = FixedStep(fps)
    catch_up(pipeline, clock, start)
    ctx = headless_context()
    try:
        compositor = make_compositor(ctx, show, size, pipeline)
        out = np.empty((stop - start, size[1], size[0], 3), np.uint8)
        for i in range(start, stop):
            frame = pipeline.generate(clock.at(i))
            compositor.draw(frame, frame, 1.0)
            out[i - start] = compositor.read()
        return out
    finally:
        ctx.release()


def connect(workers: int, address: str | None = None) -> bool:
    """Join the Ray cluster at `address` ("auto": the one `ray start --head` runs on this machine, or
    a local Ray started in-process when there is none), or without one start a local Ray with `workers`
    CPUs; a session already open in this process is used as it is. True when this call opened the session."""
    if address and "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"  # `ray start` wrote this machine's cluster token: present it
    try:
        import ray
    except ImportError:
        raise DistributedError("--workers needs Ray: pip install 'masquerade[distributed]'") from None
    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}
    try:
        if address == "auto":
            try:
                ray.init(address="auto", **kwargs)
            except (ConnectionError, RuntimeError, ValueError):
                log.info("--ray auto: no Ray cluster runs on this machine; starting a local one for this render")
                ray.init(num_cpus=workers, **kwargs)
        elif address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=workers, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        what = f"--ray {address}: cannot join the Ray cluster" if address else "a local Ray did not start"
        raise DistributedError(f"{what}: {e}") from None
    return True


def render_distributed(show: Show, out: Path, seconds: float, size=None, fps: float | None = None,
                       device: str = "auto", progress: bool = True, replay: Path | None = None,
                       workers: int = 2, address: str | None = None, chunk: int | None = None,
                       stop=None) -> int:
    """`engine.loop.render`, with the frames drawn by Ray tasks `workers` at a time and written in order.
    `stop` (a threading.Event, set by SIGINT/SIGTERM) ends it between chunks as `render` ends between frames:
    RenderInterrupted, the chunks written so far kept in the partial file, the tasks in flight cancelled."""
    from tqdm import tqdm

    from engine import sinks
    from engine.clock import FixedStep
    from engine.controls.record import Recording
    from engine.loop import RenderInterrupted
    from engine.sinks.video import Writer as VideoWriter
    from engine.sinks.video import mux_audio

    held = stateful_filters(show)
    if held:
        raise DistributedError(f"--workers: filter {held[0]!r} carries state from frame to frame, so its frames "
                               "depend on every earlier one and cannot be drawn in separate chunks; render this "
                               "show in one process (without --workers)")
    fps = fps or show.output.fps
    size = tuple(size or show.output.size)
    total = round(seconds * fps)
    recording = Recording.load(replay) if replay else None
    trail_sources = {b.source for b in show.bindings if b.target == "output.trail"}
    if show.output.trail > 0 or (recording and any(e.source in trail_sources for e in recording.events)):
        raise DistributedError("--workers: the show's trail (video feedback) mixes every frame into the next, so "
                               "frames cannot be drawn in separate chunks; render this show in one process "
                               "(without --workers)")
    started_here = connect(workers, address)
    import ray

    try:
        task = ray.remote(num_cpus=1, num_gpus=1 if device == "cuda" else 0, max_retries=RETRIES)(render_chunk)
        show_ref = ray.put(show)
        ranges = chunks(total, workers, chunk)
        clock, sink = FixedStep(fps), sinks.for_path(out, fps, size)
        waiting: dict = {}  # object ref -> chunk number, at most `workers` in flight
        done: dict[int, object] = {}
        submitted = written = frames_written = 0
        with tqdm(total=total, disable=not progress, unit="frame", desc=f"render {out.name} on Ray") as bar:
            try:
                while written < len(ranges):
                    while submitted < len(ranges) and len(waiting) < workers:
                        first, end = ranges[submitted]
                        waiting[task.remote(show_ref, first, end, fps, size, device, recording)] = submitted
                        submitted += 1
                    ready, _ = ray.wait(list(waiting), num_returns=1, timeout=0.2)  # a signal is seen within 0.2 s
                    if stop is not None and stop.is_set():
                        raise RenderInterrupted(frames_written, total, None)
                    for ref in ready:
                        k = waiting.pop(ref)
                        done[k] = ref
                        bar.update(ranges[k][1] - ranges[k][0])
                    while written in done:  # in order: chunk k is written only after chunk k-1
                        frames = ray.get(done.pop(written))
                        for j, rgb in enumerate(frames):
                            sink.write(rgb, clock.at(ranges[written][0] + j))
                            frames_written += 1
                        written += 1
            except (RenderInterrupted, KeyboardInterrupt):
                for ref in waiting:
                    ray.cancel(ref, force=True)
                raise RenderInterrupted(frames_written, total, sink.interrupt(keep=True)) from None
            except ray.exceptions.RayError as e:
                sink.interrupt(keep=False)  # a failed render leaves nothing under the name asked for
                raise DistributedError(f"the Ray render failed: {e}") from None
            except BaseException:
                sink.interrupt(keep=False)
                raise
            sink.close()  # the file takes its name only now, complete
    finally:
        if started_here:
            ray.shutdown()
    if show.audio.is_file(show) and isinstance(sink, VideoWriter):
        mux_audio(out, show.resolve(show.audio.source))
    log.info("rendered %d frames to %s on Ray (%d workers, %d chunks)", total, out, workers, len(ranges))
    return total
