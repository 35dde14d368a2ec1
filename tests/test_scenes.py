"""Scenes and the timeline (engine/scenes.py, engine/timeline.py): scenes in order with each transition, checked on
the pixels against each scene drawn alone; scene changes over real OSC on the live loop; timed cues that fire and
ease; quantise; whole-piece renders that stop at the end and repeat exactly; errors that name the row."""

import socket
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from engine import scenes
from engine import show as shows
from engine.controls.state import ControlState
from engine.frame import Tick
from engine.pipeline import Pipeline, make_bus
from engine.show import ShowError

from .conftest import DEFAULT_MODEL, masquerade

HEAD = f'''[model]
path = "{DEFAULT_MODEL}"
[walk]
seconds_per_keyframe = 2.0
[output]
size = [64, 64]
fps = 10
[timeline]
loop = false
'''

FOUR = HEAD + '''
[[scene]]
name = "one"
duration = 1.0
[[scene]]
name = "two"
duration = 1.0
walk = { seed = 5, truncation = 0.7 }
transition = { kind = "crossfade", seconds = 0.5 }
[[scene]]
name = "three"
duration = 1.0
walk = { seed = 9 }
transition = { kind = "fade-through", seconds = 0.4, colour = [1.0, 0.0, 0.0] }
[[scene]]
name = "four"
duration = 1.0
walk = { seed = 13 }
transition = { kind = "glide", seconds = 0.6 }
'''


def load(tmp_path, text, name="show.toml"):
    path = tmp_path / name
    path.write_text(text)
    return shows.load(path)


def alone(scene):
    """A scene's own show drawn by itself, as if it were the whole show."""
    return Pipeline(scene.show, "cpu", ControlState(make_bus(scene.show)))


def image(source, t):
    return source.generate(Tick(round(t * 10), t)).image


def test_scenes_play_in_order_with_each_transition(tmp_path):
    show = load(tmp_path, FOUR)
    player = scenes.build(show, "cpu")
    one, two, three, four = (alone(s) for s in show.scenes)
    frames = {round(i / 10, 3): image(player, i / 10) for i in range(0, 45)}
    torch.testing.assert_close(frames[0.5], image(one, 0.5))
    # crossfade 1.0..1.5: the frame at 1.2 is 0.6 of scene two and 0.4 of scene one, each as drawn alone
    expected = image(one, 1.2) * (1 - 0.4) + image(two, 1.2) * 0.4
    torch.testing.assert_close(frames[1.2], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(frames[1.5], image(two, 1.5))  # the transition is over
    # scene two starts at walk.truncation 0.7 (its own), scene one at the show's 1.0
    assert player.pipelines[1].controls.at(1.5)[0]["walk.truncation"] == pytest.approx(0.7)
    assert player.pipelines[0].controls.at(1.5)[0]["walk.truncation"] == pytest.approx(1.0)
    # fade-through red 2.0..2.4: red at the midpoint, halfway there before it
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand_as(frames[2.2])
    torch.testing.assert_close(frames[2.2], red)
    torch.testing.assert_close(frames[2.1], image(two, 2.1) * 0.5 + red * 0.5, atol=1e-6, rtol=0)
    torch.testing.assert_close(frames[2.4], image(three, 2.4))
    # glide 3.0..3.6: one model, the latent eased from scene three's walk to four's; not a pixel blend
    mid = frames[3.3]
    blend = image(three, 3.3) * 0.5 + image(four, 3.3) * 0.5
    assert (mid - blend).abs().mean() > 1e-3 and (mid - image(four, 3.3)).abs().mean() > 1e-3
    torch.testing.assert_close(frames[3.6], image(four, 3.6))
    torch.testing.assert_close(frames[4.4], image(four, 4.4))  # no loop: the last scene holds
    assert player.director.current == 3


def test_a_looping_show_starts_again_and_cut_is_immediate(tmp_path):
    text = HEAD.replace("loop = false", "loop = true") + '''
[[scene]]
name = "a"
duration = 0.5
[[scene]]
name = "b"
duration = 0.5
walk = { seed = 3 }
'''
    show = load(tmp_path, text)
    assert scenes.end_of(show) is None
    d = scenes.Director(show.scenes, loop=True)
    assert [d.advance(t / 10).scene for t in range(0, 16)] == [0] * 5 + [1] * 5 + [0] * 5 + [1]
    player = scenes.build(show, "cpu")
    b = alone(show.scenes[1])
    for i in range(6):
        image(player, i / 10)
    torch.testing.assert_close(image(player, 0.6), image(b, 0.6))


def test_scene_go_by_name_over_real_osc_on_the_live_loop(tmp_path):
    from engine.controls.record import Recording
    from engine.loop import LiveOptions, render, run_live

    text = HEAD.replace("loop = false", "loop = true") + '''
[[scene]]
name = "colour"
duration = "until cued"
[[scene]]
name = "grey"
duration = "until cued"
[[scene.filters]]
kind = "grade"
saturation = 0.0
'''
    show = load(tmp_path, text)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stop = threading.Event()

    def perform():
        from pythonosc.udp_client import SimpleUDPClient

        client = SimpleUDPClient("127.0.0.1", port)  # from before the engine listens until it stops: a headless
        while not stop.is_set():  # run is not paced, so it may take well under a second
            client.send_message("/masq/scene/go", "grey")  # by name; a number works too
            time.sleep(0.005)

    performer = threading.Thread(target=perform, daemon=True)
    performer.start()
    out, record = tmp_path / "live", tmp_path / "set.jsonl"
    try:
        run = run_live(show, LiveOptions(device="cpu", headless=True, frames=40, out=out, osc_port=port,
                                         record=record, size=(64, 64)))
    finally:
        stop.set()
        performer.join(timeout=5)
    assert run.frames == 40
    live = [np.asarray(Image.open(p)).astype(int) for p in sorted(out.iterdir())]

    def grey(f):
        return np.abs(f[..., 0] - f[..., 1]).max() <= 1 and np.abs(f[..., 1] - f[..., 2]).max() <= 1

    events = Recording.load(record).events
    assert events and all(e.source == "osc:/masq/scene/go" for e in events) and events[0].value == 2.0
    cued = round(events[0].t * 10)  # the frame the first cue applied on (fps 10)
    assert all(not grey(f) for f in live[:cued]) and grey(live[-1])
    replayed = tmp_path / "replayed"  # the recorded set re-renders to the same frames
    render(show, replayed, 4.0, size=(64, 64), device="cpu", progress=False, replay=record)
    again = [np.asarray(Image.open(p)).astype(int) for p in sorted(replayed.iterdir())]
    assert len(again) == 40
    for a, b in zip(live, again, strict=True):
        assert np.array_equal(a, b)


def test_an_unknown_scene_name_over_real_osc_is_counted_and_ignored(tmp_path, monkeypatch):
    from engine import inputs
    from engine.loop import LiveOptions, run_live

    show = load(tmp_path, HEAD.replace("loop = false", "loop = true") + '''
[[scene]]
name = "colour"
duration = "until cued"
[[scene]]
name = "grey"
duration = "until cued"
[[scene.filters]]
kind = "grade"
saturation = 0.0
''')
    receivers = []  # the run's OSC receiver, for its counters
    start_osc = inputs.start_osc
    monkeypatch.setattr(inputs, "start_osc", lambda *a, **k: receivers.append(start_osc(*a, **k)) or receivers[-1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stop = threading.Event()

    def perform():
        from pythonosc.udp_client import SimpleUDPClient

        client = SimpleUDPClient("127.0.0.1", port)  # from before the engine listens until it stops
        while not stop.is_set():
            client.send_message("/masq/scene/go", "nope")  # no such scene
            time.sleep(0.005)

    performer = threading.Thread(target=perform, daemon=True)
    performer.start()
    out, record = tmp_path / "live", tmp_path / "set.jsonl"
    try:
        run = run_live(show, LiveOptions(device="cpu", headless=True, frames=20, out=out, osc_port=port,
                                         record=record, size=(64, 64)))
    finally:
        stop.set()
        performer.join(timeout=5)
    assert run.frames == 20 and len(list(out.iterdir())) == 20  # never fatal: every frame
    stats = receivers[0].stats
    assert stats.bad_args > 0 and stats.posted == 0  # counted as a refused value, never posted
    assert not record.exists() or not record.read_text().strip()  # nothing reached the bus
    for f in sorted(out.iterdir()):  # still the first scene (colour), never the grey one
        a = np.asarray(Image.open(f)).astype(int)
        assert np.abs(a[..., 0] - a[..., 1]).max() > 1 or np.abs(a[..., 1] - a[..., 2]).max() > 1


def test_timed_cues_fire_at_their_time_and_ease_over_their_fade(tmp_path):
    text = HEAD + '''
[tempo]
bpm = 120
[[cue]]
number = 1
at = 1.0
fade = 2.0
set = { "walk.speed" = 3.0 }
[[cue]]
number = 2
at = "3.1"
fade = "2 beats"
set = { "walk.energy" = 0.5 }
'''
    show = load(tmp_path, text)
    assert [(c.at, c.fade) for c in show.cues] == [(1.0, 2.0), (4.0, 1.0)]  # bar 3 beat 1 at 120 BPM; 2 beats
    assert scenes.end_of(show) == 5.0
    p = scenes.build(show, "cpu")
    speed, energy = {}, {}
    for i in range(0, 51):
        t = i / 10
        p.generate(Tick(i, t))
        snap = p.controls.bus.latest
        speed[round(t, 3)], energy[round(t, 3)] = snap["walk.speed"], snap["walk.energy"]
    assert speed[0.9] == 1.0 and speed[1.0] == 1.0  # it fires at 1.0 and starts from where the param is
    assert speed[2.0] == pytest.approx(2.0)  # mid-fade: halfway (smoothstep is 0.5 there)
    assert 1.0 < speed[1.5] < 2.0 < speed[2.5] < 3.0
    assert speed[3.0] == pytest.approx(3.0) and speed[4.0] == pytest.approx(3.0)
    assert energy[3.9] == 0.0 and energy[4.5] == pytest.approx(0.25) and energy[5.0] == pytest.approx(0.5)


def test_a_fader_takes_a_fading_param_back(tmp_path):
    show = load(tmp_path, HEAD + '[[cue]]\nat = 0.0\nfade = 4.0\nset = { "walk.speed" = 4.0 }\n')
    p = scenes.build(show, "cpu")
    for i in range(0, 11):
        p.generate(Tick(i, i / 10))
    assert 1.0 < p.controls.bus.latest["walk.speed"] < 2.0
    p.controls.bus.post("osc:/masq/walk/speed", 0.5)  # the fader's middle: 1x
    for i in range(11, 40):
        p.generate(Tick(i, i / 10))
    assert p.controls.bus.latest.held_by["walk.speed"] == "osc:/masq/walk/speed"
    assert p.controls.bus.latest["walk.speed"] == pytest.approx(1.0, abs=0.01)


def test_a_live_cue_is_quantised_to_the_next_beat(tmp_path):
    text = HEAD + '''
[tempo]
bpm = 120
quantise = "beat"
[[cue]]
number = 1
set = { "walk.truncation" = 0.3 }
[[cue]]
number = 2
quantise = "bar"
set = { "walk.truncation" = 0.6 }
[[cue]]
number = 3
quantise = "none"
set = { "walk.truncation" = 0.9 }
'''
    show = load(tmp_path, text)
    p = scenes.build(show, "cpu")
    targets = {}
    events = {0.2: 1, 0.7: 2, 2.1: 3}  # beats every 0.5 s, bars every 2 s
    for i in range(0, 23):
        t = i / 10
        if round(t, 3) in events:
            p.controls.bus.post("osc:/masq/scene/cue", events[round(t, 3)])
        p.generate(Tick(i, t))
        targets[round(t, 3)] = p.controls.bus.latest.targets["walk.truncation"]
    assert targets[0.4] == 1.0 and targets[0.5] == pytest.approx(0.3)  # fired at 0.2, lands on the beat at 0.5
    assert targets[1.9] == pytest.approx(0.3) and targets[2.0] == pytest.approx(0.6)  # on the bar
    assert targets[2.1] == pytest.approx(0.9)  # "none": at once


def test_render_with_no_seconds_plays_the_piece_to_its_end_twice_the_same(tmp_path):
    path = tmp_path / "piece.toml"
    path.write_text(HEAD + '''
[[scene]]
duration = 0.6
[[scene]]
duration = 0.8
walk = { seed = 4 }
transition = { kind = "crossfade", seconds = 0.4 }
[[cue]]
at = 0.2
fade = 0.5
set = { "walk.energy" = 0.8 }
''')
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        r = masquerade("render", path, "-o", out, "--device", "cpu", "-q")
        assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in a.iterdir())
    assert len(names) == 14  # 1.4 s at 10 fps: the last scene's end
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert np.array_equal(np.asarray(Image.open(a / name)), np.asarray(Image.open(b / name))), name


def test_a_show_that_plays_for_ever_asks_for_seconds(tmp_path):
    path = tmp_path / "forever.toml"
    path.write_text(HEAD.replace("loop = false", "loop = true") + "[[scene]]\nduration = 1.0\n")
    r = masquerade("render", path, "-o", tmp_path / "x.mp4")
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "--seconds" in lines[0] and "forever.toml" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_the_demo_piece_loads_and_ends(tmp_path):
    from .conftest import ROOT

    show = shows.load(ROOT / "shows" / "triptych.toml")
    assert len(show.scenes) == 3 and scenes.end_of(show) == pytest.approx(16.0)
    assert {s.transition.kind for s in show.scenes} == {"cut", "crossfade", "fade-through"}


def test_timed_cues_that_touch_or_end_the_piece_still_load(tmp_path):
    cues = ('[[cue]]\nat = 1.0\nfade = 2.0\nset = { "walk.speed" = 2.0 }\n'  # one fade after the other: fine
            '[[cue]]\nat = 3.0\nfade = "2 beats"\nset = { "walk.speed" = 3.0 }\n'
            '[[cue]]\nat = 1.5\nfade = 2.0\nset = { "walk.energy" = 0.5 }\n')  # another param: fine
    assert len(load(tmp_path, HEAD + cues).cues) == 3  # no scenes: any `at`
    piece = '[[scene]]\nduration = 2.0\n[[scene]]\nduration = 1.0\n'
    assert scenes.end_of(load(tmp_path, HEAD + piece + cues)) == 4.0  # the last cue at the end, fading past it
    looping = HEAD.replace("loop = false", "loop = true") + piece + cues.replace("at = 3.0", "at = 30.0")
    assert scenes.end_of(load(tmp_path, looping)) is None


BAD = [
    ('[[scene]]\nduration = -1.0\n', r"scene\[1\].duration must be 0.1..1000000"),
    ('[[scene]]\nduration = "forever"\n', r"scene\[1\].duration must be seconds or \"until cued\""),
    ('[[scene]]\nduration = 1.0\ntransition = "wipe"\n', r"scene\[1\].transition.kind must be one of cut"),
    ('[[scene]]\nduration = 1.0\n[[scene]]\nduration = 1.0\ntransition = { kind = "crossfade", seconds = 2.0 }\n',
     r"scene\[2\].transition.seconds \(2\) is longer than its duration"),
    ('[[scene]]\nduration = 1.0\n[[scene]]\nduration = 2.0\nmodel = { path = "tests/data/stylegan2/uncond_skip32.'
     'safetensors" }\ntransition = { kind = "glide", seconds = 1.0 }\n', r"scene\[2\].transition: glide needs"),
    ('[[scene]]\nduration = 1.0\ntransition = { kind = "fade-through", seconds = 0.5, colour = [2.0, 0, 0] }\n',
     r"scene\[1\].transition.colour must be 3 numbers in 0..1"),
    ('[[scene]]\nduration = 1.0\nwalk = { kind = "nope" }\n', r"scene\[1\]: walk.kind must be one of"),
    ('[[scene]]\nduration = 1.0\nspeed = 2\n', r"scene\[1\]: unknown key 'speed'"),
    ('[[scene]]\nduration = 1.0\nmodel = { path = "missing.safetensors" }\n', r"scene\[1\].model.path: .*no such"),
    ('[[scene]]\nname = "a"\nduration = 1.0\n[[cue]]\nscene = "b"\n', r"\[\[cue\]\] #1: scene must be a scene's"),
    ('[[cue]]\nat = "0.1"\n', r"\[\[cue\]\] #1: at must be seconds or \"bar.beat\""),
    ('[[cue]]\nat = -2.0\n', r"\[\[cue\]\] #1: at must be 0..1000000"),
    ('[[cue]]\nfade = "3 minutes"\n', r"\[\[cue\]\] #1: fade must be seconds, \"N beats\""),
    ('[[cue]]\nquantise = "half"\n', r"\[\[cue\]\] #1: quantise must be"),
    ('[tempo]\nquantise = "half"\n', r"tempo.quantise must be"),
    ('[[cue]]\nat = 1.0\nfade = 2.0\nset = { "walk.speed" = 2.0 }\n[[cue]]\nat = 2.5\nfade = "2 beats"\n'
     'set = { "walk.speed" = 3.0 }\n', r"\[\[cue\]\] #2: set.walk.speed fades over 2.5..3.5 s, overlapping "
     r"\[\[cue\]\] #1's fade of it over 1..3 s"),
    ('[[scene]]\nduration = 1.0\n[[scene]]\nduration = 2.0\n[[cue]]\nat = 3.5\nset = { "walk.speed" = 2.0 }\n',
     r"\[\[cue\]\] #1: at 3.5 s is after the piece's end \(3 s"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_bad_scenes_and_timed_cues_name_the_row(tmp_path, text, message):
    with pytest.raises(ShowError, match=message):
        load(tmp_path, HEAD + text)


def test_a_bad_scene_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(HEAD + "[[scene]]\nduration = nan\n")
    r = masquerade("render", path, "-o", tmp_path / "x.mp4")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "bad.toml" in r.stderr and "scene[1].duration" in r.stderr


def test_a_bound_trigger_and_a_timed_cue_change_scenes(tmp_path):
    text = HEAD + '''
[[scene]]
name = "a"
duration = "until cued"
[[scene]]
name = "b"
duration = "until cued"
walk = { seed = 3 }
[[scene]]
name = "c"
duration = "until cued"
walk = { seed = 4 }
[[bind]]
source = "midi:note/1/60"
target = "scene.next"
[[cue]]
at = 1.0
scene = "a"
'''
    show = load(tmp_path, text)
    assert scenes.end_of(show) is None  # scenes until cued: no end
    player = scenes.build(show, "cpu")
    playing = []
    for i in range(0, 15):
        if i in (3, 6):
            player.controls.bus.post("midi:note/1/60", 1.0)
        player.generate(Tick(i, i / 10))
        playing.append(player.director.current)
    assert playing == [0] * 3 + [1] * 3 + [2] * 4 + [0] * 5  # next, next, then the timed cue back to "a" at 1.0


def test_a_paused_clock_repeats_show_time_and_still_reads_new_events(tmp_path):
    show = load(tmp_path, HEAD + '[[cue]]\nnumber = 1\nset = { "walk.truncation" = 0.5 }\n')
    p = scenes.build(show, "cpu")
    p.generate(Tick(0, 0.5))
    p.controls.bus.post("osc:/masq/scene/cue", 1)
    p.generate(Tick(1, 0.5))  # paused: the same show time, a new frame
    assert p.controls.bus.latest.targets["walk.truncation"] == 0.5
    p.generate(Tick(2, 0.5))
    assert not p.controls.bus.latest.fired("scene.cue")  # fired once, not on every repeated frame


def test_a_scene_whose_model_cannot_be_built_is_skipped_and_the_scene_on_screen_plays_on(tmp_path):
    """The model file is there (so the show loads) but is not a model: live, it fails in the background load; when
    its turn comes the outgoing scene plays on, the next scene still comes in, and the heartbeat says why."""
    from engine.switch import scene_of

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}" + bytes(64))
    text = FOUR.replace('name = "two"\n', f'name = "two"\nmodel = {{ path = "{broken}" }}\n')
    show = load(tmp_path, text)
    player = scenes.build(show, "cpu", background=True)
    one, _, three, _ = (alone(s) if i != 1 else None for i, s in enumerate(show.scenes))
    frames = {round(i / 10, 3): image(player, i / 10) for i in range(0, 30)}
    assert list(player.failed) == [1] and "broken.safetensors" in player.failed[1]
    for t in (1.0, 1.2, 1.5, 1.9):  # scene two's turn: scene one, as drawn alone, plays on
        torch.testing.assert_close(frames[t], image(one, t))
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand_as(frames[2.2])
    torch.testing.assert_close(frames[2.1], image(one, 2.1) * 0.5 + red * 0.5, atol=1e-6, rtol=0)  # one -> three
    torch.testing.assert_close(frames[2.5], image(three, 2.5))
    assert scene_of(player) == {"number": 3, "name": "three", "failed": [
        {"number": 2, "name": "two", "error": player.failed[1]}]}
