"""The control bus: mapping, priorities, smoothing in show time, scheduling, triggers, record and replay."""

import math
import random
import threading
import time

import pytest

from engine.controls.bus import Binding, Bus, ControlError, Param, declare_all
from engine.controls.record import Recording, Replay

SPEED = Param("walk.speed", default=1.0, minimum=0.125, maximum=8.0)
ENERGY = Param("walk.energy", default=0.0, minimum=0.0, maximum=1.0)
SAVE = Param("bookmark.save", default=1.0, minimum=1.0, maximum=64.0, trigger=True)
NEXT = Param("walk.next_keyframe", default=0.0, minimum=0.0, maximum=1.0, trigger=True)


def make_bus(*bindings, params=(SPEED, ENERGY, SAVE, NEXT)):
    return declare_all(Bus(), params, bindings)


def test_a_fader_is_mapped_through_its_input_range_and_curve():
    bus = make_bus(Binding("osc:/speed", "walk.speed", curve="exp"),
                   Binding("midi:cc/1/7", "walk.energy", input=(0, 127)))
    assert bus.snapshot(0.0)["walk.speed"] == 1.0  # the default, before any event
    bus.post("osc:/speed", 0.5)
    bus.post("midi:cc/1/7", 127 / 4)
    snap = bus.snapshot(0.1)
    assert snap["walk.speed"] == pytest.approx(1.0)  # exp: the middle is the geometric mean of 1/8 and 8
    assert snap["walk.energy"] == pytest.approx(0.25)
    bus.post("osc:/speed", 0.75)
    assert bus.snapshot(0.2)["walk.speed"] == pytest.approx(math.sqrt(8))
    bus.post("osc:/speed", 7.0)  # outside the input range: clamped to the param's maximum
    assert bus.snapshot(0.3)["walk.speed"] == 8.0


def test_an_output_range_narrows_a_binding_and_results_stay_inside_the_param():
    bus = make_bus(Binding("camera:motion", "walk.energy", output=(0.2, 0.6)))
    bus.post("camera:motion", 0.5)
    assert bus.snapshot(0.0)["walk.energy"] == pytest.approx(0.4)
    binding = Binding("osc:/e", "walk.energy", output=(-1.0, 2.0))
    assert binding.map(1.0, ENERGY) == 1.0 and binding.map(0.0, ENERGY) == 0.0


def test_unmap_inverts_map_for_feedback():
    b = Binding("osc:/speed", "walk.speed", curve="exp")
    for raw in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert b.unmap(b.map(raw, SPEED), SPEED) == pytest.approx(raw)


def test_higher_priority_wins_and_release_hands_back():
    bus = make_bus(Binding("osc:/energy", "walk.energy"), Binding("camera:motion", "walk.energy", priority=1))
    bus.post("camera:motion", 0.8)
    bus.post("osc:/energy", 0.1)  # later, but lower priority
    snap = bus.snapshot(0.0)
    assert snap["walk.energy"] == pytest.approx(0.8) and snap.held_by["walk.energy"] == "camera:motion"
    bus.post("osc:/energy", 0.2)
    assert bus.snapshot(0.1)["walk.energy"] == pytest.approx(0.8)  # the camera still holds it
    bus.release("camera:motion")  # unplugged: the fader's latest value takes over
    snap = bus.snapshot(0.2)
    assert snap["walk.energy"] == pytest.approx(0.2) and snap.held_by["walk.energy"] == "osc:/energy"
    bus.release("osc:/energy")
    snap = bus.snapshot(0.3)
    assert snap["walk.energy"] == pytest.approx(0.2) and snap.held_by["walk.energy"] is None  # holds


def test_equal_priorities_the_most_recent_event_wins():
    bus = make_bus(Binding("osc:/a", "walk.energy"), Binding("osc:/b", "walk.energy"))
    bus.post("osc:/a", 0.3)
    bus.post("osc:/b", 0.6)
    assert bus.snapshot(0.0)["walk.energy"] == pytest.approx(0.6)
    bus.post("osc:/a", 0.1)
    assert bus.snapshot(0.1)["walk.energy"] == pytest.approx(0.1)
    # time order beats arrival order: b was posted last but is scheduled before a
    bus.post("osc:/a", 0.9, at=0.15)
    bus.post("osc:/b", 0.4, at=0.12)
    assert bus.snapshot(0.2)["walk.energy"] == pytest.approx(0.9)


def test_smoothing_is_an_exponential_approach_in_show_time():
    tau = 0.5
    params = (Param("walk.energy", 0.0, 0.0, 1.0, smoothing=tau),)
    bus = make_bus(Binding("osc:/e", "walk.energy"), params=params)
    bus.snapshot(0.0)
    bus.post("osc:/e", 1.0, at=0.25)
    assert bus.snapshot(0.2)["walk.energy"] == 0.0  # not yet due
    snap = bus.snapshot(1.0)
    assert snap.targets["walk.energy"] == 1.0
    assert snap["walk.energy"] == pytest.approx(1 - math.exp(-0.75 / tau))  # from the event's time, not the frame's


def test_smoothing_is_frame_rate_independent():
    params = (Param("walk.energy", 0.0, 0.0, 1.0, smoothing=0.4), Param("walk.speed", 1.0, 0.125, 8.0, 1.0))
    bindings = (Binding("osc:/e", "walk.energy"), Binding("osc:/s", "walk.speed", curve="exp"))
    events = [("osc:/e", 1.0, 0.31), ("osc:/s", 0.9, 0.5), ("osc:/e", 0.2, 1.07), ("osc:/s", 0.1, 1.9)]

    def run(fps):
        bus = make_bus(*bindings, params=params)
        for source, value, at in events:
            bus.post(source, value, at=at)
        return {round(i / fps, 9): bus.snapshot(i / fps) for i in range(round(3 * fps) + 1)}

    at30, at60 = run(30), run(60)
    for t, snap in at30.items():
        for name in ("walk.energy", "walk.speed"):
            assert snap[name] == pytest.approx(at60[t][name], abs=1e-9), (t, name)
    assert 0.2 < at30[3.0]["walk.energy"] < 0.25  # still approaching 0.2 from above


def test_scheduled_events_wait_for_their_time_and_late_ones_apply_now():
    bus = make_bus(Binding("osc:/e", "walk.energy"))
    bus.recording = Recording()
    bus.post("osc:/e", 0.5, at=1.0)
    assert bus.snapshot(0.5)["walk.energy"] == 0.0
    assert bus.snapshot(0.99)["walk.energy"] == 0.0
    assert bus.snapshot(1.0)["walk.energy"] == 0.5
    bus.post("osc:/e", 0.7, at=0.2)  # in the past: applies at the next frame
    assert bus.snapshot(1.1)["walk.energy"] == pytest.approx(0.7)
    assert [e.t for e in bus.recording.events] == [1.0, 1.1]  # recorded when it applied, so replay agrees


def test_triggers_fire_once_and_a_release_does_not_fire():
    bus = make_bus(Binding("osc:/next", "walk.next_keyframe"), Binding("osc:/save", "bookmark.save", input=(1, 64)))
    bus.post("osc:/next", 1.0)
    bus.post("osc:/save", 3)
    snap = bus.snapshot(0.0)
    assert snap.triggers == {"walk.next_keyframe", "bookmark.save"} and snap["bookmark.save"] == 3.0
    assert snap.fired("walk.next_keyframe")
    assert bus.snapshot(0.1).triggers == frozenset()  # delivered once
    bus.post("osc:/next", 0.0)  # the button's release
    bus.post("osc:/save", 5, at=0.25)
    assert bus.snapshot(0.2).triggers == frozenset()
    snap = bus.snapshot(0.3)
    assert snap.triggers == {"bookmark.save"} and snap["bookmark.save"] == 5.0


def test_snapshots_are_immutable():
    bus = make_bus()
    snap = bus.snapshot(0.0)
    with pytest.raises(TypeError):
        snap.values["walk.speed"] = 2.0
    with pytest.raises(AttributeError):
        snap.t = 1.0


def test_unbound_and_non_finite_values_are_counted_not_applied():
    bus = make_bus(Binding("osc:/e", "walk.energy"))
    bus.post("osc:/nobody", 1.0)
    bus.post("osc:/e", math.nan)
    bus.post("osc:/e", math.inf)
    assert bus.snapshot(0.0)["walk.energy"] == 0.0
    assert (bus.stats.unbound, bus.stats.rejected, bus.stats.applied) == (1, 2, 0)


def test_posting_from_many_threads_loses_nothing():
    bus = make_bus(Binding("osc:/e", "walk.energy"))
    threads = [threading.Thread(target=lambda: [bus.post("osc:/e", 0.5) for _ in range(500)]) for _ in range(4)]
    for th in threads:
        th.start()
    frames = 0
    while any(th.is_alive() for th in threads) or frames == 0:
        bus.snapshot(frames / 30)
        frames += 1
    for th in threads:
        th.join()
    bus.snapshot(frames / 30)
    assert bus.stats.applied + bus.stats.coalesced == 2000  # each frame applies the newest value of a source


def test_a_recording_replays_to_the_same_snapshots(tmp_path):
    params = (Param("walk.energy", 0.0, 0.0, 1.0, smoothing=0.3), SPEED, SAVE)
    bindings = (Binding("osc:/e", "walk.energy"), Binding("camera:motion", "walk.energy", priority=1),
                Binding("osc:/s", "walk.speed", curve="exp"), Binding("osc:/save", "bookmark.save", input=(1, 64)))
    live = make_bus(*bindings, params=params)
    live.recording = Recording()
    rng = random.Random(7)
    ts = [i / 30 for i in range(90)]
    done = threading.Event()

    def performer():  # posts with jittered wall timing while the loop below renders
        for i in range(150):
            source = rng.choice(["osc:/e", "osc:/s", "osc:/save", "camera:motion", "osc:/nobody"])
            if source == "camera:motion" and i % 7 == 0:
                live.release(source)
            elif i % 13 == 0:  # a bundle that arrives late: it applies at the next frame
                live.post(source, rng.random(), at=0.0)
            elif i % 11 == 0:  # a bundle scheduled a little ahead
                live.post(source, rng.random(), at=ts[min(i * 90 // 150 + 2, 89)] + 0.004)
            else:
                live.post(source, rng.choice([rng.random(), rng.randint(1, 64)]))
            time.sleep(rng.random() * 0.0015)
        done.set()

    thread = threading.Thread(target=performer)
    thread.start()
    live_snaps = []
    for t in ts:
        live_snaps.append(live.snapshot(t))
        time.sleep(0.002)
    thread.join()
    assert done.is_set() and len(live.recording) > 50

    path = live.recording.save(tmp_path / "set.jsonl")
    replay, fresh = Replay(Recording.load(path)), make_bus(*bindings, params=params)
    replay_snaps = []
    for t in ts:
        replay.feed(fresh, t)
        replay_snaps.append(fresh.snapshot(t))
    assert any(s.triggers for s in live_snaps) and len({s["walk.energy"] for s in live_snaps}) > 10
    for a, b in zip(live_snaps, replay_snaps):
        assert a == b, a.t


def test_a_bad_recording_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"t": 0, "source": "osc:/e", "value": 1}\n{"t": "soon", "source": "osc:/e", "value": 1}\n')
    with pytest.raises(ControlError, match=r"bad.jsonl:2"):
        Recording.load(path)


@pytest.mark.parametrize("row, expected", [
    ({"source": "osc:/masq/walk/speed", "target": "walk.sped"}, "target 'walk.sped'; did you mean 'walk.speed'"),
    ({"source": "osk:/masq/walk/speed", "target": "walk.speed"}, "unknown source 'osk:/masq/walk/speed'"),
    ({"source": "osc:masq/speed", "target": "walk.speed"}, "not an OSC address"),
    ({"source": "osc:/s", "target": "walk.energy", "curve": "exp"}, "exp curve needs an output range"),
    ({"source": "osc:/s", "target": "walk.energy", "curve": "log"}, "curve must be"),
    ({"source": "osc:/s", "target": "walk.energy", "input": [1, 1]}, "input range [1.0, 1.0] is empty"),
    ({"source": "osc:/s", "target": "walk.energy", "input": 1}, "input must be [low, high]"),
    ({"source": "osc:/s", "target": "walk.energy", "prio": 1}, "unknown key 'prio'"),
    ({"source": "osc:/s"}, "target must be a string"),
])
def test_a_bad_binding_names_its_row(row, expected):
    bus = make_bus()
    where = "shows/x.toml [[bind]] #3"
    with pytest.raises(ControlError) as err:
        bus.bind(Binding.from_table(row, where))
    assert where in str(err.value) and expected in str(err.value)


def test_binding_one_source_to_one_target_twice_names_both_rows():
    bus = make_bus(Binding("osc:/e", "walk.energy", where="#1"))
    with pytest.raises(ControlError, match="#2: .*already bound .* by #1"):
        bus.bind(Binding("osc:/e", "walk.energy", where="#2"))


def test_bad_params_are_refused():
    with pytest.raises(ControlError, match="default"):
        Param("walk.speed", default=9.0, minimum=0.0, maximum=8.0)
    with pytest.raises(ControlError, match="smoothing"):
        Param("bookmark.save", trigger=True, smoothing=0.2)
