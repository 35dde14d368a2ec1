"""The offline render as a pipeline: generate, composite, read back and encode all busy at once.

    generate   a thread       frame i of show time -> (Frame [1, 3, H, W], its trail), in order, up to AHEAD ahead;
                              with a batch B > 1, B frames of show time at once (`choose_batch`: the controls and the
                              walk step frame by frame, the generator (on CUDA the filters too) on [B, 3, H, W])
    composite  the caller     the compositor's passes into its framebuffer (the GL context lives on this thread)
    read back  the caller     into one of BUFFERS pixel buffer objects; mapped BUFFERS - 1 frames later, so the
                              GL is not waited on for the frame it has just been given
    encode     a thread       the sink's write: RGB -> YUV and H.264 (PyAV releases the GIL, x264 has its own
                              threads), or a PNG file

Every stage sees every frame once, in order, on one thread, so the pixels and the file are those of the
one-by-one loop (`engine.loop.render(..., overlap=False)`, `masquerade render --no-overlap`). The hand-offs are
bounded queues: at most AHEAD + BUFFERS + QUEUED frames (and a batch) exist at once, whatever the render's length.

A failure in any stage, or `stop` (a signal), stops every stage at its next hand-off; the threads are joined
before `overlapped` returns or raises, so the caller may close or remove the sink's file at once. The error
raised is the stage's own; `Progress.writing` says whether it came from inside the sink (the output's).

Batching changes no pixel beyond 1/255: the compositor, read-back and encoder still take the frames one by one, in
order, and a batched convolution differs from one frame's only in the order it sums. On the CPU the filters run frame
by frame inside the batch (`Pipeline.batch_filters`), and the default show's frames are the very bits of batch 1
(tests/test_render_batch.py); on CUDA they take the whole batch. A filter with memory (feedback, stabilising:
`filters.stateful`), mirror mode or a show with scenes draws one frame at a time, and the log says why.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

AHEAD = 3  # generated frames waiting for the GL
BUFFERS = 3  # pixel buffers in the read-back ring: two frames in flight while the oldest is mapped
QUEUED = 3  # read-back frames waiting for the encoder
POLL = 0.05  # seconds between looks at the stop flags while a stage waits
AUTO_BATCH = 4  # frames generated at once when not asked (CPU: see docs/performance.md; CUDA: not yet measured)

log = logging.getLogger("masquerade")

_END = object()


@dataclass
class Progress:
    done: int = 0  # frames the sink has written
    writing: bool = False  # the error being raised came from inside the sink


class Stopping(Exception):
    """A stage gives up: another failed, or the render was stopped."""


class Line:
    """A bounded queue between two stages whose waits end as soon as `halt()` is true."""

    def __init__(self, depth: int, halt):
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.halt = halt

    def put(self, item) -> None:
        while True:
            if self.halt():
                raise Stopping
            try:
                self.queue.put(item, timeout=POLL)
                return
            except queue.Full:
                continue

    def get(self):
        while True:
            if self.halt():
                raise Stopping
            try:
                return self.queue.get(timeout=POLL)
            except queue.Empty:
                continue


class Readback:
    """Asynchronous read-back of the compositor's output through a ring of pixel buffer objects."""

    def __init__(self, compositor, depth: int = BUFFERS):
        w, h = compositor.size
        self.compositor, self.shape = compositor, (h, w, 3)
        self.buffers = [compositor.ctx.buffer(reserve=w * h * 3) for _ in range(depth)]
        self.pending: deque = deque()  # (buffer, tick), oldest first
        self.count = 0

    def start(self, tick) -> None:
        """Copy the output (as drawn so far) into the next buffer; the GL does it in its own time."""
        buffer = self.buffers[self.count % len(self.buffers)]
        self.compositor.fbo.read_into(buffer, components=3, alignment=1)
        self.pending.append((buffer, tick))
        self.count += 1

    @property
    def full(self) -> bool:
        """Every buffer holds a frame not yet taken: the oldest must be taken before the next `start`."""
        return len(self.pending) >= len(self.buffers)

    def take(self):
        """The oldest frame's pixels, HxWx3 uint8, top row first (as `Compositor.read`), and its tick."""
        buffer, tick = self.pending.popleft()
        rgb = np.frombuffer(buffer.read(), np.uint8).reshape(self.shape)[::-1]
        return rgb, tick

    def release(self) -> None:
        for buffer in self.buffers:
            buffer.release()


class LiveReadback:
    """The live loop's sinks fed through a `Readback` ring: each frame's copy starts after it is drawn and is
    handed on one frame later, so the render thread does not stall on the copy (on a GPU the copy runs while
    the next frame is made; Mesa's software GL copies at once either way). Frames keep their order and none
    is lost: a new compositor (fullscreen, a kiosk switch to another work size) and the end of the run hand
    on what is still in flight first."""

    def __init__(self, outputs):
        self.outputs = outputs
        self.ring: Readback | None = None

    def offer(self, compositor, tick) -> None:
        if self.ring is not None and self.ring.compositor is not compositor:
            self.flush()
        if self.ring is None:
            self.ring = Readback(compositor, depth=2)
        if self.ring.pending:  # the frame before this one: its copy had a whole frame's time to finish
            self.outputs.offer(*self.ring.take())
        self.ring.start(tick)

    def flush(self) -> None:
        """Hand on every frame in flight, oldest first, and free the ring (call while its GL context lives)."""
        if self.ring is None:
            return
        while self.ring.pending:
            self.outputs.offer(*self.ring.take())
        self.ring.release()
        self.ring = None


def choose_batch(pipeline, asked: int | None = None) -> int:
    """How many frames of show time `pipeline` generates at once: `asked` (None: AUTO_BATCH), or 1 when it cannot
    batch (a stateful filter, mirror mode, scenes). One line in the log says which and why."""
    want = AUTO_BATCH if asked is None else asked
    if want < 1:
        raise ValueError(f"batch must be 1 or more, got {want}")
    blocker = getattr(pipeline, "batch_blocker", None)
    why = "a show with scenes switches and blends them frame by frame" if blocker is None else blocker()
    if want == 1 or why is None:
        how = "asked" if asked is not None else f"chosen on {pipeline.device.type}"
        log.info("generating %d frame%s at a time (%s)", want, "s" if want > 1 else "", how)
        return want
    log.info("generating one frame at a time, not %d: %s", want, why)
    return 1


def batches(draw, ticks, batch: int):
    """(tick, Frame, Trail | None) of every tick, in order: `draw(tick)` one by one when `batch` is 1, else
    `draw([ticks])` on `batch` ticks at a time, giving [(Frame, Trail | None)] in their order."""
    ticks = iter(ticks)
    if batch == 1:
        for tick in ticks:
            yield (tick, *draw(tick))
        return
    while chunk := list(itertools.islice(ticks, batch)):
        made = draw(chunk)
        assert len(made) == len(chunk), f"{len(made)} frames drawn for {len(chunk)} ticks"
        for tick, (frame, trail) in zip(chunk, made):
            yield tick, frame, trail


def overlapped(draw, ticks, compositor, sink, progress: Progress, stop=None, bar=None, times=None,
               batch: int = 1) -> bool:
    """Write the frame `draw(tick) -> (Frame, Trail | None)` of every tick in `ticks` to `sink`, the stages
    overlapped: True when every frame is written, False when `stop` (a threading.Event) ended it first.
    `progress.done` counts the frames written, `bar` (tqdm) follows it; `times` (StageTimes) gets the GL stages
    (the generator's own come from `draw`). `batch` > 1: `draw([tick, ...]) -> [(Frame, Trail | None), ...]`
    on that many ticks at a time (`batches`)."""
    failed: list[tuple[BaseException, bool]] = []  # the first failure, and whether the sink raised it
    stopping, finished = threading.Event(), threading.Event()  # finished: the sink took the last frame

    def halt() -> bool:
        return stopping.is_set() or (stop is not None and stop.is_set())

    def fail(error: BaseException, writing: bool) -> None:
        if not failed:
            failed.append((error, writing))
        stopping.set()

    frames, pixels = Line(AHEAD, halt), Line(QUEUED, halt)

    def generate() -> None:
        try:
            for item in batches(draw, ticks, batch):
                frames.put(item)
            frames.put(_END)
        except Stopping:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread, raised there
            fail(e, writing=False)

    def encode() -> None:
        try:
            while (item := pixels.get()) is not _END:
                sink.write(*item)
                progress.done += 1
            finished.set()
        except Stopping:
            pass
        except BaseException as e:  # noqa: BLE001
            fail(e, writing=True)

    threads = [threading.Thread(target=generate, name="masquerade-generate", daemon=True),
               threading.Thread(target=encode, name="masquerade-encode", daemon=True)]
    readback, shown = Readback(compositor), 0
    try:
        for thread in threads:
            thread.start()
        while (item := _timed(times, "wait", frames.get)) is not _END:
            tick, frame, trail = item
            _timed(times, "composite", compositor.draw, frame, frame, 1.0, trail)
            if readback.full:  # the oldest buffer's frame goes to the encoder before the buffer is reused
                _timed(times, "write", pixels.put, _timed(times, "readback", readback.take))
            readback.start(tick)
            if bar is not None and progress.done > shown:
                bar.update(progress.done - shown)
                shown = progress.done
        while readback.pending:
            _timed(times, "write", pixels.put, _timed(times, "readback", readback.take))
        pixels.put(_END)
        while threads[1].is_alive() and not halt():  # the encoder finishes what is queued
            threads[1].join(POLL)
    except Stopping:
        pass
    finally:
        stopping.set()
        for thread in threads:
            _join(thread)
        readback.release()
        if bar is not None and progress.done > shown:
            bar.update(progress.done - shown)
    if failed:
        error, progress.writing = failed[0]
        raise error
    return finished.is_set()


def one_by_one(draw, ticks, compositor, sink, progress: Progress, stop=None, bar=None, times=None,
               batch: int = 1) -> bool:
    """`overlapped`'s stages one after the other on the caller's thread, as before issue 19 (`render --no-overlap`): the
    reference the overlapped render is compared with."""
    for tick, frame, trail in batches(draw, ticks, batch):
        if stop is not None and stop.is_set():
            return False
        _timed(times, "composite", compositor.draw, frame, frame, 1.0, trail)
        progress.writing = True
        _timed(times, "write", lambda t=tick: sink.write(compositor.read(), t))
        progress.writing = False
        progress.done += 1
        if bar is not None:
            bar.update(1)
    return True


def _timed(times, stage: str, fn, *args):
    """fn(*args), its time added to `times` (a StageTimes, or None) under `stage`."""
    if times is None:
        return fn(*args)
    with times.time(stage):
        return fn(*args)


def _join(thread: threading.Thread) -> None:
    """Join, even across a second Ctrl-C: the sink must not be closed while its thread still writes."""
    interrupted = None
    while thread.is_alive():
        try:
            thread.join()
        except KeyboardInterrupt as e:
            interrupted = e
    if interrupted is not None:
        raise interrupted
