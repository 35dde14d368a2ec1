"""The overlapped offline render (engine/offline.py, issue 19): the same decoded frames as `--no-overlap` for a show
with filters and for the scenes of shows/triptych.toml; a failure or a stop in any stage ends every stage, bounded;
memory stays bounded (the generator never runs far ahead of a slow sink)."""

import threading
import time

import numpy as np
import pytest

from engine import offline
from engine.compositor import Compositor
from engine.frame import Frame, Tick
from engine.sinks.video import read_frames

from .conftest import DEFAULT_SHOW, ROOT, masquerade


@pytest.mark.parametrize("show, args", [
    (DEFAULT_SHOW, ["--seconds", 1.5, "--fps", 12, "--size", "320x180"]),  # superres + grade
    (ROOT / "shows" / "triptych.toml", ["--fps", 6, "--size", "160x90"]),  # the whole piece: scenes, crossfade, fade
])
def test_overlapped_and_one_by_one_renders_decode_to_identical_frames(tmp_path, show, args):
    runs = {}
    for name, extra in (("overlap", []), ("one-by-one", ["--no-overlap"])):
        out = tmp_path / f"{name}.mp4"
        r = masquerade("render", show, "-o", out, "-q", *args, *extra)
        assert r.returncode == 0, r.stderr
        runs[name] = read_frames(out)
    assert len(runs["overlap"]) == len(runs["one-by-one"]) >= 18
    for i, (a, b) in enumerate(zip(runs["overlap"], runs["one-by-one"], strict=True)):
        assert np.array_equal(a, b), f"frame {i} differs"
    assert len({f.tobytes() for f in runs["overlap"]}) > len(runs["overlap"]) // 2  # the frames move


# --- the stages with stand-ins: a real compositor, made-up frames and sinks ---------------------------------

SOURCE, OUT = (16, 16), (48, 32)


def picture(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, (SOURCE[1], SOURCE[0], 3), dtype=np.uint8)


class Draw:
    """draw(tick) -> (Frame, trail) with a different picture each frame; raises at frame `fail_at`."""

    def __init__(self, fail_at: int | None = None):
        self.fail_at, self.calls = fail_at, 0

    def __call__(self, tick):
        self.calls += 1
        if tick.index == self.fail_at:
            raise RuntimeError(f"the model broke at frame {tick.index}")
        return Frame(tick, None, picture(tick.index)), None


class Sink:
    def __init__(self, fail_at: int | None = None, gate: threading.Event | None = None):
        self.frames, self.fail_at, self.gate = [], fail_at, gate

    def write(self, rgb, tick):
        if self.gate is not None:
            assert self.gate.wait(30)
        if tick.index == self.fail_at:
            raise OSError(28, "No space left on device", "piece.partial.mp4")
        self.frames.append((tick.index, np.array(rgb)))


def ticks(n: int):
    return [Tick(i, i / 10) for i in range(n)]


def bounded(fn, seconds: float = 30):
    """fn() in a thread: its result or its exception; fails (does not hang) past `seconds`."""
    out, done = {}, threading.Event()

    def body():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001
            out["error"] = e
        done.set()

    threading.Thread(target=body, daemon=True).start()
    assert done.wait(seconds), f"did not return within {seconds} s"
    return out


def on_gl(run, draw, n, sink, progress, stop=None):
    """`run` (offline.overlapped or one_by_one) of n ticks, with a compositor on a GL context of this thread."""
    from engine.compositor import headless_context

    ctx = headless_context()
    try:
        return run(draw, ticks(n), Compositor(ctx, OUT, SOURCE), sink, progress, stop)
    finally:
        ctx.release()


def stage_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in ("masquerade-generate", "masquerade-encode")]


def test_the_stages_write_what_one_by_one_writes():
    results = {}
    for name, run in (("overlap", offline.overlapped), ("one-by-one", offline.one_by_one)):
        sink, progress = Sink(), offline.Progress()
        assert bounded(lambda r=run, s=sink, p=progress: on_gl(r, Draw(), 12, s, p)) == {"value": True}
        assert progress.done == 12
        results[name] = sink.frames
    assert [i for i, _ in results["overlap"]] == list(range(12))
    for (i, a), (_, b) in zip(results["overlap"], results["one-by-one"], strict=True):
        assert np.array_equal(a, b), i
    assert not stage_threads()


def test_a_generator_failure_stops_every_stage():
    sink, progress = Sink(), offline.Progress()
    out = bounded(lambda: on_gl(offline.overlapped, Draw(fail_at=7), 500, sink, progress))
    assert "the model broke at frame 7" in str(out.get("error")), out
    assert progress.writing is False and progress.done == len(sink.frames) <= 7
    assert not stage_threads()


def test_a_sink_failure_stops_every_stage_and_says_it_was_the_sink():
    draw, sink, progress = Draw(), Sink(fail_at=4), offline.Progress()
    out = bounded(lambda: on_gl(offline.overlapped, draw, 500, sink, progress))
    assert isinstance(out.get("error"), OSError) and progress.writing is True, out
    assert progress.done == 4 and draw.calls < 4 + 20  # the generator stopped too
    assert not stage_threads()


def test_a_stop_ends_the_render_promptly_with_the_frames_written_counted():
    stop, sink, progress = threading.Event(), Sink(), offline.Progress()

    class Slow(Draw):
        def __call__(self, tick):
            if tick.index == 5:
                stop.set()  # as the signal handler does, between frames
            time.sleep(0.01)
            return super().__call__(tick)

    started = time.monotonic()
    out = bounded(lambda: on_gl(offline.overlapped, Slow(), 100000, sink, progress, stop))
    assert out == {"value": False}
    assert time.monotonic() - started < 10
    assert progress.done == len(sink.frames) <= 5
    assert not stage_threads()


def test_a_slow_sink_holds_the_generator_back():
    """Memory stays bounded: the frames in flight are at most the queues' and the read-back ring's."""
    gate, draw, progress = threading.Event(), Draw(), offline.Progress()
    sink = Sink(gate=gate)
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        out=on_gl(offline.overlapped, draw, 200, sink, progress)), daemon=True)
    thread.start()
    time.sleep(1.0)  # the sink holds its first frame: everything upstream fills and waits
    ahead = draw.calls
    assert ahead <= 1 + offline.QUEUED + offline.BUFFERS + 1 + offline.AHEAD + 1, ahead
    gate.set()
    thread.join(60)
    assert result == {"out": True} and progress.done == 200
