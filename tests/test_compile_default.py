"""`[model] compile = "auto"` (issue 20): a live show's first frames come from the eager model while the
compiled one warms up in the background; the compiled frames are the eager ones within 1e-4; a failed
compile is one log line and the show stays eager; inductor's cache lives in the user's cache folder.

The live-flow tests hold the compile back through `speed.compile_function` (the test hook) and compile with
dynamo's own `eager` backend, so they take seconds; one test runs a real inductor compile of an 8 px
StyleGAN2 (its cache in the user's cache folder, as a user's would be: seconds once it is warm).
"""

import json
import logging
import threading

import pytest
import torch

from engine import scenes, timeline
from engine import show as shows
from engine.frame import Tick
from engine.generators import importers, speed
from engine.generators.speed import Speed, accelerate
from engine.pipeline import Pipeline, make_bus
from engine.producer import Producer
from engine.show import ShowError
from engine.switch import Switcher

from .conftest import DEFAULT_MODEL, ROOT, until

TINY = ROOT / "tests" / "data" / "stylegan2" / "uncond_orig8.safetensors"  # StyleGAN2, 8 px: the smallest graph
CPU = torch.device("cpu")


def show_with(tmp_path, model, extra=""):
    path = tmp_path / "show.toml"
    path.write_text(f'[model]\npath = "{model}"\n{extra}\n')
    return shows.load(path)


def held_back(release: threading.Event, fail: bool = False):
    """A `compile_function` whose compiled model cannot run until `release` is set (dynamo traces it for
    real, with its `eager` backend: no C++ to wait for), or that fails as a missing compiler would."""
    def compile_function(fn, mode=None):
        if fail:
            raise RuntimeError("C++ compile error\ng++: not found")
        compiled = torch.compile(fn, backend="eager", dynamic=False)

        def run(*args, **kwargs):
            assert release.wait(timeout=60)
            return compiled(*args, **kwargs)
        return run
    return compile_function


def live_frames(producer, ticks):
    """Ask for each tick as the display does and wait (bounded) for its frame."""
    images = []
    for tick in ticks:
        producer.request(tick)
        frame = until(lambda tick=tick: next((f for f in producer.latest() if f.tick == tick), None), 60,
                      f"the frame of {tick}")
        images.append(frame.image)
    return images


def eager_frames(tmp_path, ticks):
    pipeline = Pipeline(show_with(tmp_path, TINY, "compile = false"), "cpu")
    assert pipeline.generator.compiled is None
    return [pipeline.generate(tick).image for tick in ticks]


TICKS = [Tick(i, 1.7 * i) for i in range(5)]  # far apart in show time: pictures that differ


def test_live_frames_flow_while_the_compiled_model_warms_up(tmp_path, monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(speed, "compile_function", held_back(release))
    pipeline = Pipeline(show_with(tmp_path, TINY), "cpu")  # no compile key: "auto"
    compiled = pipeline.generator.compiled
    assert compiled is not None and compiled.state == "eager"  # StyleGAN on the CPU: compile pays
    producer = Producer(pipeline)
    try:
        first = live_frames(producer, TICKS[:3])  # the compile cannot finish yet: these are eager frames
        assert compiled.state == "warming"
        release.set()
        assert compiled.join(timeout=120) and compiled.state == "compiled"
        after = live_frames(producer, TICKS[3:])  # from the compiled model
    finally:
        release.set()
        producer.close()
    expected = eager_frames(tmp_path, TICKS)
    for got, want in zip(first + after, expected, strict=True):
        assert (got - want).abs().max() <= 1e-4
    assert (expected[-1] - expected[0]).abs().max() > 0.01  # the walk moves: not one frame compared five times


def test_a_failed_compile_is_one_log_line_and_the_show_stays_eager(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(speed, "compile_function", held_back(threading.Event(), fail=True))
    pipeline = Pipeline(show_with(tmp_path, TINY), "cpu")
    producer = Producer(pipeline)
    try:
        with caplog.at_level(logging.INFO, logger=speed.__name__):
            got = live_frames(producer, TICKS[:2])
            assert pipeline.generator.compiled.join(timeout=60)
            got += live_frames(producer, TICKS[2:])
    finally:
        producer.close()
    assert pipeline.generator.compiled.state == "failed"
    lines = [r.getMessage() for r in caplog.records if r.name == speed.__name__]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "g++" not in lines[0] and "stays eager" in lines[0] and "C++ compile error" in lines[0]
    for a, b in zip(got, eager_frames(tmp_path, TICKS), strict=True):
        assert torch.equal(a, b)  # the eager model, untouched


TWO_SCENES = '[[scene]]\nname = "one"\nduration = 1.0\n[[scene]]\nname = "two"\nduration = 1.0\nwalk = { seed = 5 }\n'


def test_each_scene_of_a_live_show_warms_its_model_up_when_it_plays(tmp_path, monkeypatch):
    """A show with scenes: the scene on screen compiles in the background while its eager model draws; a
    scene not played yet compiles nothing; the next one compiles once it plays."""
    release = threading.Event()
    monkeypatch.setattr(speed, "compile_function", held_back(release))
    player = scenes.build(show_with(tmp_path, TINY, "[output]\nfps = 10\n[timeline]\nloop = false\n" + TWO_SCENES),
                          "cpu", background=True)
    producer = Producer(player)
    try:
        live_frames(producer, [Tick(0, 0.0), Tick(1, 0.5)])  # scene one
        one = player.pipelines[0].generator.compiled
        two = until(lambda: player.pipelines[1], 60, "scene two's background load").generator.compiled
        assert one.state == "warming" and two.state == "eager"
        release.set()
        assert one.join(timeout=120) and one.state == "compiled"
        assert two.state == "eager"  # still not played: nothing compiled for it
        live_frames(producer, [Tick(12, 1.2), Tick(13, 1.3)])  # scene two
        assert player.current == 1
        assert two.join(timeout=120) and two.state == "compiled"
    finally:
        release.set()
        producer.close()


def test_a_kiosk_switch_warms_the_incoming_shows_model_up_once_it_has_taken_over(tmp_path, monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(speed, "compile_function", held_back(release))
    first = show_with(tmp_path, TINY)
    second_path = tmp_path / "second.toml"
    second_path.write_text(f'[model]\npath = "{TINY}"\n[walk]\nseed = 3\n')
    controls = timeline.Controls(first, make_bus(first))
    control = tmp_path / "control.json"
    switcher = Switcher(first, scenes.build(first, "cpu", controls), controls, control, "cpu")
    producer = Producer(switcher)
    try:
        live_frames(producer, TICKS[:1])
        old = switcher.now.source.generator.compiled
        assert old.state == "warming"
        control.write_text(json.dumps({"id": "a", "show": str(second_path), "seconds": 0}))
        tick = iter(Tick(i, 0.1 * i) for i in range(1, 10_000))
        until(lambda: live_frames(producer, [next(tick)]) and switcher.switches == 1, 60, "the switch")
        new = switcher.now.source.generator.compiled
        assert new is not old
        live_frames(producer, [next(tick)])
        assert new.state == "warming"  # the incoming show's own model compiles, in the background
        release.set()
        assert new.join(timeout=120) and new.state == "compiled"
    finally:
        release.set()
        producer.close()
        switcher.close()


def test_background_compiles_run_one_at_a_time_and_a_dropped_models_turn_is_skipped(tmp_path, monkeypatch):
    """Two live models (a kiosk's show and the one it switched to): the second's compile waits for the first's;
    dropped meanwhile (`cool_down`), it never compiles and its model keeps drawing eager."""
    release = threading.Event()
    monkeypatch.setattr(speed, "compile_function", held_back(release))
    first, second = Pipeline(show_with(tmp_path, TINY), "cpu"), Pipeline(show_with(tmp_path, TINY), "cpu")
    producers = Producer(first), Producer(second)
    try:
        live_frames(producers[0], TICKS[:1])
        live_frames(producers[1], TICKS[:1])
        a, b = first.generator.compiled, second.generator.compiled
        assert a.state == b.state == "warming"  # a compiles (held back), b waits for its turn
        second.cool_down()
        release.set()
        assert a.join(timeout=120) and a.state == "compiled"
        assert b.join(timeout=120) and b.state == "cancelled"
        got = live_frames(producers[1], TICKS[1:3])
    finally:
        release.set()
        for p in producers:
            p.close()
    for x, y in zip(got, eager_frames(tmp_path, TICKS[1:3]), strict=True):
        assert torch.equal(x, y)  # the eager model, untouched


def test_lockstep_runs_never_swap_models(tmp_path, monkeypatch):
    """Headless runs wait for every frame and are compared byte for byte: "auto" leaves them eager."""
    monkeypatch.setattr(speed, "compile_function", held_back(threading.Event(), fail=True))
    pipeline = Pipeline(show_with(tmp_path, TINY), "cpu")
    producer = Producer(pipeline)
    try:
        for tick in TICKS[:2]:
            producer.wait_for(tick, timeout=60)
    finally:
        producer.close()
    assert pipeline.generator.compiled.state == "eager"


def test_compile_is_on_by_default_only_where_it_pays(tmp_path):
    assert Pipeline(show_with(tmp_path, TINY), "cpu").generator.compiled is not None
    assert Pipeline(show_with(tmp_path, DEFAULT_MODEL), "cpu").generator.compiled is None  # DCGAN: guards cost more
    assert Pipeline(show_with(tmp_path, TINY, "compile = false"), "cpu").generator.compiled is None
    with pytest.raises(ShowError, match=r'show.toml: model.compile must be true, false or "auto", got \'yes\''):
        show_with(tmp_path, TINY, 'compile = "yes"')
    with pytest.raises(ShowError, match=r"show.toml: model.compile must be true or false or a string, got 1"):
        show_with(tmp_path, TINY, "compile = 1")


def test_the_inductor_cache_is_in_the_user_cache_folder(tmp_path, monkeypatch):
    from torch._inductor.runtime.cache_dir_utils import cache_dir as inductors

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "")  # restored after the test, whatever it was
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert speed.cache_dir() == tmp_path / "home" / ".cache" / "masquerade" / "inductor"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert speed.cache_dir() == tmp_path / "xdg" / "masquerade" / "inductor"
    speed.compile_function(lambda x: x + 1)  # torch.compile is lazy: this only sets where its output goes
    assert inductors() == str(tmp_path / "xdg" / "masquerade" / "inductor")  # where inductor will write


def test_inductor_compiled_stylegan_is_the_eager_one_within_1e4():
    """A real compile (C++ kernels from inductor), into the user's cache folder as in a show."""
    eager = importers.load(TINY).module.eval().requires_grad_(False)
    fast = accelerate(importers.load(TINY).module.eval().requires_grad_(False), CPU, Speed(compile=True))
    z = torch.randn(2, eager.z_dim, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        got, want = fast(z), eager(z)
    assert fast.compiled.state == "compiled"
    assert (got - want).abs().max() <= 1e-4 and (want - 0.5).abs().max() > 0.05
