"""Generation in a worker thread: the display blends when the model is slower than the screen."""

import time

import pytest

from engine import show as shows
from engine.clock import Realtime
from engine.frame import Tick
from engine.loop import _realtime_frames
from engine.pipeline import Pipeline
from engine.producer import Producer, blend_weight

from .conftest import DEFAULT_SHOW


class SlowModel:
    """The real pipeline, made slower than the display (as a big model on a small machine is)."""

    def __init__(self, pipeline, seconds):
        self.pipeline, self.seconds = pipeline, seconds

    def generate(self, tick):
        time.sleep(self.seconds)
        return self.pipeline.generate(tick)


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline(shows.load(DEFAULT_SHOW), "cpu")


def test_slow_model_is_blended_into_motion_every_display_frame(pipeline):
    producer = Producer(SlowModel(pipeline, 0.06))  # ~15 model frames/s
    clock = Realtime()
    shown_times, newest_times = [], []
    try:
        while clock.time() < 2.0:
            tick = clock.tick()
            older, newer, mix = _realtime_frames(producer, tick)
            shown_times.append(older.tick.t + mix * (newer.tick.t - older.tick.t))
            newest_times.append(newer.tick.t)
            time.sleep(1 / 100)  # a 100 Hz display
    finally:
        producer.close()
    settled = shown_times[len(shown_times) // 4:]  # once two frames exist and the lead is measured
    steps = [b - a for a, b in zip(settled, settled[1:])]
    assert min(steps) >= -1e-9, "the picture went backwards in time"
    frozen = sum(s == 0 for s in steps) / len(steps)
    newest = newest_times[len(newest_times) // 4:]
    newest_frozen = sum(b == a for a, b in zip(newest, newest[1:])) / (len(newest) - 1)
    assert newest_frozen > 0.5  # without blending, most display frames would repeat the last picture
    assert frozen < 0.15, f"{frozen:.0%} of display frames stood still"


def test_lockstep_gives_each_tick_its_own_frame(pipeline):
    producer = Producer(pipeline)
    try:
        for i in range(5):
            tick = Tick(i, i / 30)
            assert producer.wait_for(tick).tick == tick
    finally:
        producer.close()


def test_live_display_survives_a_failing_model(pipeline, caplog):
    """A model that fails now and then (a CUDA hiccup, a bad frame) never stops the live display."""

    class Flaky:
        calls = 0

        def generate(self, tick):
            Flaky.calls += 1
            if Flaky.calls % 3 == 0:
                raise RuntimeError("model hiccup")
            return pipeline.generate(tick)

    producer = Producer(Flaky())
    clock = Realtime()
    try:
        shown = set()
        while clock.time() < 1.0:
            older, newer, _ = _realtime_frames(producer, clock.tick())
            shown.add(newer.tick.index)
            time.sleep(0.005)
    finally:
        producer.close()
    assert producer.failures >= 3 and len(shown) > 5  # errors counted, and new frames kept coming
    assert "model hiccup" in caplog.text and "the show goes on" in caplog.text


def test_a_model_that_never_draws_is_fatal_live():
    class Broken:
        def generate(self, tick):
            raise RuntimeError("no weights")

    producer = Producer(Broken())
    try:
        with pytest.raises(RuntimeError, match="no weights"):
            _realtime_frames(producer, Tick(0, 0.0))
    finally:
        producer.close()


def test_model_errors_reach_the_display_thread(pipeline):
    class Broken:
        def generate(self, tick):
            raise RuntimeError("model exploded")

    producer = Producer(Broken())
    try:
        with pytest.raises(RuntimeError, match="model exploded"):
            producer.wait_for(Tick(0, 0.0), timeout=5)
    finally:
        producer.close()


def test_blend_weight():
    from engine.frame import Frame

    a, b = Frame(Tick(0, 1.0), None), Frame(Tick(1, 2.0), None)
    assert blend_weight([a, b], 1.5) == 0.5
    assert blend_weight([a, b], 0.5) == 0.0 and blend_weight([a, b], 9) == 1.0
    assert blend_weight([b], 0.0) == 1.0
