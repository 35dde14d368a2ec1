"""Steering the latent live: bookmark slots, scene cues, discovered directions and the style params, each
driven the way a performer drives them (OSC sources on the show's bus), each checked on the frames."""

import json

import pytest
import torch

from engine import show as shows
from engine.controls.record import Recording
from engine.controls.state import ControlState
from engine.frame import Tick
from engine.pipeline import Pipeline, make_bus
from engine.show import ShowError

from .conftest import DEFAULT_MODEL, ROOT

COND = ROOT / "tests" / "data" / "stylegan2" / "cond3_resnet16.safetensors"
UNCOND = ROOT / "tests" / "data" / "stylegan2" / "uncond_skip32.safetensors"


def pipeline(tmp_path, text="", model=DEFAULT_MODEL, record=False):
    path = tmp_path / "show.toml"
    path.write_text(f'[model]\npath = "{model}"\n[walk]\nseconds_per_keyframe = 2.0\n{text}')
    show = shows.load(path)
    return Pipeline(show, "cpu", ControlState(make_bus(show), record=record))


def frame(p, t):
    return p.generate(Tick(round(t * 30), t)).image


def play(p, until, events=(), fps=10):
    """Frames at `fps` up to show time `until`; `events` [(t, source, value)] posted at their times."""
    pending = sorted(events)
    out = {}
    for i in range(round(until * fps) + 1):
        t = i / fps
        while pending and pending[0][0] <= t:
            _, source, value = pending.pop(0)
            p.controls.bus.post(source, value, at=t)
        out[round(t, 3)] = frame(p, t)
    return out


def test_a_saved_bookmark_is_recalled_held_and_let_go(tmp_path):
    text = "[latent]\nglide = 1.0\nhold = 2.0\n"
    steered = play(pipeline(tmp_path, text), 9.0, [(1.0, "osc:/masq/bookmark/save", 3),
                                                   (4.0, "osc:/masq/bookmark/recall", 3)])
    plain = play(pipeline(tmp_path, text), 9.0)
    assert (plain[1.0] - plain[5.5]).abs().max() > 0.05  # the walk has moved on by then
    for t in (5.0, 5.5, 6.0):  # glided in by 5.0, held until 7.0
        torch.testing.assert_close(steered[t], plain[1.0], atol=2e-4, rtol=0)
    assert (steered[4.5] - plain[1.0]).abs().max() > 1e-3  # on its way, not there yet
    torch.testing.assert_close(steered[3.0], plain[3.0])  # saving does not move the picture
    torch.testing.assert_close(steered[8.5], plain[8.5])  # let go: the walk, where it has got to


def test_bookmark_slots_are_written_to_the_show_file_and_recalled_by_a_later_show(tmp_path):
    marks = tmp_path / "marks.json"
    text = f'[latent]\nbookmarks = "{marks}"\nglide = 0.5\n'
    first = play(pipeline(tmp_path, text), 2.0, [(1.0, "osc:/masq/bookmark/save", 2)])
    saved = json.loads(marks.read_text())
    assert list(saved["bookmarks"]) == ["slot2"]
    later = pipeline(tmp_path, text)
    recalled = play(later, 1.0, [(0.0, "osc:/masq/bookmark/recall", 2)])
    torch.testing.assert_close(recalled[1.0], first[1.0], atol=2e-4, rtol=0)


def test_an_empty_slot_is_ignored_and_counted(tmp_path):
    p = pipeline(tmp_path)
    steered = play(p, 2.0, [(0.5, "osc:/masq/bookmark/recall", 9)])
    plain = play(pipeline(tmp_path), 2.0)
    torch.testing.assert_close(steered[2.0], plain[2.0])
    assert p.steer.ignored == 1


def test_a_cue_sets_params_cuts_to_its_keyframe_at_once_and_is_not_recorded(tmp_path):
    text = ("[[cue]]\nnumber = 4\nname = \"calm\"\nkeyframe = 3\nset = { \"walk.truncation\" = 0.25, "
            "\"walk.speed\" = 0.5 }\n")
    p = pipeline(tmp_path, text, record=True)
    play(p, 1.0, [(1.0, "osc:/masq/scene/cue", 4)])
    snap = p.controls.bus.latest
    assert snap.targets["walk.truncation"] == 0.25 and snap.targets["walk.speed"] == 0.5  # then smoothed
    assert p.controls.walk_time == pytest.approx(2 * 2.0)  # resting on keyframe 3 (from 1): 2 keyframes in
    rest = p.walk.step(Tick(0, 4.0))
    torch.testing.assert_close(frame(p, 1.0), p.styler(rest, 1.0))  # the same show time: truncation not moved yet
    sources = [e.source for e in p.controls.bus.recording.events]
    assert sources == ["osc:/masq/scene/cue"]  # replay derives the cue's own events from the show again


def test_a_cue_that_names_an_unknown_param_names_the_row(tmp_path):
    with pytest.raises(ShowError, match=r"\[\[cue\]\] #1: set.walk.sped: no such param"):
        pipeline(tmp_path, '[[cue]]\nset = { "walk.sped" = 1.0 }\n')
    with pytest.raises(ShowError, match=r"\[\[cue\]\] #2: number must be 1..999 and unique"):
        pipeline(tmp_path, "[[cue]]\nnumber = 1\n[[cue]]\nnumber = 1\n")


def test_directions_are_params_with_osc_faders_and_move_the_picture(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    text = "[latent]\ndirections = 3\n"
    p = pipeline(tmp_path, text)
    assert {"direction.1", "direction.2", "direction.3"} <= set(p.controls.bus.params)
    centre = play(p, 0.5, [(0.0, "osc:/masq/direction/1", 0.5)])[0.5]  # the fader's middle: no move
    moved = play(pipeline(tmp_path, text), 0.5, [(0.0, "osc:/masq/direction/1", 1.0)])[0.5]
    plain = play(pipeline(tmp_path), 0.5)[0.5]
    torch.testing.assert_close(centre, plain)
    assert (moved - plain).abs().mean() > 0.01
    assert list((tmp_path / "cache" / "masquerade" / "directions").glob("*.safetensors"))  # cached per model


def test_directions_on_a_stylegan_move_w(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    p = pipeline(tmp_path, "[latent]\ndirections = 2\n", model=UNCOND)
    assert p.steer.found.space == "w"
    plain = frame(p, 0.3)
    p.controls.bus.post("osc:/masq/direction/2", 0.0)  # -3 sigma
    for i in range(12):  # smoothing 0.2 s: let it arrive
        moved = frame(p, 0.3 + i / 30)
    z = p.walk.step(Tick(0, p.controls.walk_time))
    amount = p.controls.bus.latest["direction.2"]
    assert -3 < amount < -2.5  # heading for -3 sigma, smoothed
    shift = amount * p.steer.found.sigmas[1] * p.steer.found.directions[1]
    torch.testing.assert_close(moved, p.styler(z, 1.0, w_shift=shift[None]), atol=1e-5, rtol=0)
    assert (moved - plain).abs().mean() > 1e-3


def test_style_class_is_live_and_fractions_lie_between_classes(tmp_path):
    p = pipeline(tmp_path, "[style]\nclass_label = 0\n", model=COND)
    one = pipeline(tmp_path, "[style]\nclass_label = 1\n", model=COND)
    p.controls.bus.post("osc:/masq/style/class", 1)
    torch.testing.assert_close(frame(p, 0.4), frame(one, 0.4))
    p.controls.bus.post("osc:/masq/style/class", 0.5)
    half = frame(p, 0.5)
    zero = frame(pipeline(tmp_path, "[style]\nclass_label = 0\n", model=COND), 0.5)
    assert (half - zero).abs().max() > 1e-3 and (half - frame(one, 0.5)).abs().max() > 1e-3


def test_style_mix_fader_blends_the_mixed_layers(tmp_path):
    mixed = pipeline(tmp_path, "[style]\nmix_seed = 7\n", model=UNCOND)
    plain = pipeline(tmp_path, "", model=UNCOND)
    full, none = frame(mixed, 0.4), frame(plain, 0.4)
    assert (full - none).abs().mean() > 1e-4
    mixed.controls.bus.post("osc:/masq/style/mix", 0.0)
    for i in range(31):  # smoothing 0.2 s: 3 s is 15 time constants
        off = frame(mixed, 0.4 + i / 10)
    torch.testing.assert_close(off, frame(plain, 3.4), atol=1e-5, rtol=0)


def test_a_recorded_cue_replays_to_the_same_frames(tmp_path):
    text = "[[cue]]\nnumber = 1\nkeyframe = 2\nset = { \"walk.energy\" = 0.6 }\n"
    live = pipeline(tmp_path, text, record=True)
    a = play(live, 2.0, [(0.7, "osc:/masq/scene/cue", 1)])
    recording = Recording(live.controls.bus.recording.events)
    path = tmp_path / "show.toml"
    show = shows.load(path)
    replayed = Pipeline(show, "cpu", ControlState(make_bus(show), replay=recording))
    b = play(replayed, 2.0)
    for t in a:
        torch.testing.assert_close(a[t], b[t])


def test_bookmarks_from_the_command_line_and_a_cue_that_recalls_latent_arithmetic(tmp_path):
    from .conftest import masquerade

    marks = tmp_path / "marks.json"
    base = ["bookmarks"]
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        assert masquerade(*base, "add", marks, name, "--seed", seed, "--model", DEFAULT_MODEL).returncode == 0
    out = masquerade(*base, "mix", marks, "d", "a - b + c", "--model", DEFAULT_MODEL)
    assert out.returncode == 0 and "a, b, c, d" in out.stdout, out.stderr
    bad = masquerade(*base, "mix", marks, "e", "a - nope", "--model", DEFAULT_MODEL)
    assert bad.returncode == 2 and "nope" in bad.stderr
    data = json.loads(marks.read_text())["bookmarks"]
    expected = torch.tensor(data["a"]["z"]) - torch.tensor(data["b"]["z"]) + torch.tensor(data["c"]["z"])
    torch.testing.assert_close(torch.tensor(data["d"]["z"]), expected)

    text = f'[latent]\nbookmarks = "{marks}"\nglide = 0.5\n[[cue]]\nnumber = 1\nlatent = "a - b + c"\n'
    p = pipeline(tmp_path, text)
    frames = play(p, 1.0, [(0.0, "osc:/masq/scene/cue", 1)])
    torch.testing.assert_close(frames[1.0], p.styler(expected[None], 1.0), atol=2e-4, rtol=0)
    with pytest.raises(ShowError, match=r"\[\[cue\]\] #1: latent: .*'zzz'"):
        pipeline(tmp_path, f'[latent]\nbookmarks = "{marks}"\n[[cue]]\nlatent = "a + zzz"\n')


def test_a_cue_acts_on_the_frame_that_fires_it(tmp_path):
    p = pipeline(tmp_path, '[style]\nclass_label = 0\n[[cue]]\nnumber = 7\nset = { "style.class" = 2.0 }\n',
                 model=COND)
    two = pipeline(tmp_path, "[style]\nclass_label = 2\n", model=COND)
    frame(p, 0.3)
    p.controls.bus.post("osc:/masq/scene/cue", 7, at=0.4)
    torch.testing.assert_close(frame(p, 0.4), frame(two, 0.4))  # style.class has no smoothing: at once


def test_a_bookmark_still_is_what_the_show_presents(tmp_path):
    """`bookmarks still --show`: the bookmark through the show's frame path (its x4 super-resolution) and
    compositor, at the output size (1280x720) or `--size`; not the 64 px generator image."""
    import numpy as np
    from PIL import Image

    from .conftest import DEFAULT_SHOW, masquerade

    model = shows.load(DEFAULT_SHOW).model_path  # a bookmark belongs to one model: the show's
    marks = tmp_path / "marks.json"
    assert masquerade("bookmarks", "add", marks, "a", "--seed", 4, "--model", model).returncode == 0
    out = masquerade("bookmarks", "still", marks, "a", "-o", tmp_path / "a.png", "--model", model,
                     "--show", DEFAULT_SHOW)
    assert out.returncode == 0, out.stderr
    still = Image.open(tmp_path / "a.png")
    assert still.size == (1280, 720)
    g = Pipeline(shows.load(DEFAULT_SHOW), "cpu").generator
    z = torch.tensor(json.loads(marks.read_text())["bookmarks"]["a"]["z"])[None]
    with torch.inference_mode():
        small = g(z, truncation_psi=0.8)[0].permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy()
    plain = np.asarray(Image.fromarray(small).resize((720, 720), Image.LANCZOS)).astype(int)
    picture = np.asarray(still).astype(int)[:, 280:1000]
    assert np.abs(picture - plain).mean() > 3 and picture.std() > 20  # the SR and the grade ran
    out = masquerade("bookmarks", "still", marks, "a", "-o", tmp_path / "b.png", "--model", model,
                     "--show", DEFAULT_SHOW, "--size", "320x180")
    assert out.returncode == 0 and Image.open(tmp_path / "b.png").size == (320, 180), out.stderr
