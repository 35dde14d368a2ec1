"""Keyframe jumps and bookmark recalls wait for the beat: `[tempo] quantise` and a binding's own `quantise`, on the
frame of the next beat (or bar), the same in every run."""

import pytest

from engine import scenes
from engine import show as shows
from engine.controls.bus import Bus, declare_all
from engine.controls.state import TempoFeed
from engine.controls.tempo import Tempo
from engine.frame import Tick
from engine.timeline import Controls
from tests.conftest import DEFAULT_MODEL

FPS = 20  # 120 BPM: a beat every 10 frames, a bar every 40


def show(quantise="beat", binds=()):
    return shows.parse({"model": {"path": str(DEFAULT_MODEL)}, "output": {"fps": FPS, "size": [64, 64]},
                        "tempo": {"bpm": 120, "quantise": quantise}, "bind": list(binds)})


def fired_frames(s, posts, name, frames=50, feeds=()):
    """The frames (and values) where `name` fires, `posts` being {frame: [(source, value)]} posted before it."""
    controls = Controls(s, declare_all(Bus(), shows.control_params(s), s.bindings), feeds=feeds)
    out = []
    for i in range(frames):
        for source, value in posts.get(i, ()):
            controls.bus.post(source, value)
        snap, _ = controls.at(i / FPS)
        if snap.fired(name):
            out.append((i, snap[name]))
    return out


def test_a_recall_posted_mid_beat_fires_on_the_frame_of_the_next_beat():
    posts = {4: [("osc:/masq/bookmark/recall", 3.0)]}
    assert fired_frames(show("beat"), posts, "bookmark.recall") == [(10, 3.0)]
    assert fired_frames(show("bar"), posts, "bookmark.recall") == [(40, 3.0)]
    assert fired_frames(show(""), posts, "bookmark.recall") == [(4, 3.0)]  # no grid: at once
    assert fired_frames(show("beat"), {10: posts[4]}, "bookmark.recall") == [(10, 3.0)]  # on the beat: at once


@pytest.mark.parametrize("address, name, value", [("/masq/keyframe/next", "walk.next_keyframe", 1.0),
                                                  ("/masq/keyframe/prev", "walk.prev_keyframe", 1.0),
                                                  ("/masq/keyframe/index", "walk.keyframe", 5.0)])
def test_keyframe_jumps_wait_for_the_beat(address, name, value):
    assert fired_frames(show("beat"), {13: [(f"osc:{address}", value)]}, name) == [(20, value)]


def test_a_binding_quantise_overrides_the_show():
    binds = [{"source": "midi:note/1/60", "target": "walk.next_keyframe", "quantise": "bar"},
             {"source": "midi:note/1/61", "target": "bookmark.recall", "output": [2, 2], "quantise": "none"}]
    s = show("beat", binds)
    assert fired_frames(s, {3: [("midi:note/1/60", 0.8)]}, "walk.next_keyframe") == [(40, 1.0)]
    assert fired_frames(s, {3: [("midi:note/1/61", 0.8)]}, "bookmark.recall") == [(3, 2.0)]
    with pytest.raises(shows.ShowError, match=r"\[\[bind\]\] #1: quantise must be"):
        show("beat", [{"source": "midi:note/1/60", "target": "walk.next_keyframe", "quantise": "soon"}])


def test_beats_themselves_are_never_delayed():
    binds = [{"source": "tempo:beat", "target": "walk.next_keyframe"}]
    feed = TempoFeed(Tempo(120.0, 0.0, 4))  # the beat as the pipeline posts it, each frame
    frames = [i for i, _ in fired_frames(show("bar", binds), {}, "walk.next_keyframe", frames=41, feeds=[feed])]
    assert frames == [0, 10, 20, 30, 40]


def test_the_pipeline_recalls_on_the_frame_of_the_next_beat():
    s = show("beat")
    controls = Controls(s, declare_all(Bus(), shows.control_params(s), s.bindings))
    pipeline = scenes.build(s, "cpu", controls)
    began = {}
    for i in range(14):
        if i == 0:
            controls.bus.post("osc:/masq/bookmark/save", 1.0)
        if i == 4:
            controls.bus.post("osc:/masq/bookmark/recall", 1.0)
        pipeline.advance(Tick(i, i / FPS))
        began[i] = pipeline.steer._recall[1] if pipeline.steer._recall is not None else None
    assert all(began[i] is None for i in range(10)) and began[10] == pytest.approx(0.5)


def test_a_render_of_a_quantised_recall_is_the_render_of_a_recall_on_the_beat(tmp_path):
    """Offline: a recorded recall at 0.2 s, quantised to the beat, gives the frames of one recorded at 0.5 s."""
    import json

    import numpy as np
    from PIL import Image

    from tests.conftest import masquerade

    def replay(name, recall_at):
        path = tmp_path / f"{name}.jsonl"
        rows = [{"t": 0.0, "source": "osc:/masq/bookmark/save", "value": 1.0},
                {"t": recall_at, "source": "osc:/masq/bookmark/recall", "value": 1.0}]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    def render(show_name, quantise, replay_path, out):
        show_path = tmp_path / show_name
        show_path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[output]\nsize = [64, 64]\nfps = {FPS}\n'
                             f'[walk]\nkind = "drift"\n[latent]\nglide = 0.3\n'
                             f'[tempo]\nbpm = 120\nquantise = "{quantise}"\n')
        r = masquerade("render", show_path, "-o", tmp_path / out, "--seconds", 1, "--replay", replay_path, "-q")
        assert r.returncode == 0, r.stderr
        return [np.asarray(Image.open(p)) for p in sorted((tmp_path / out).iterdir())]

    quantised = render("q.toml", "beat", replay("mid", 0.2), "q")
    on_beat = render("n.toml", "", replay("beat", 0.5), "n")
    at_once = render("n2.toml", "", replay("mid2", 0.2), "n2")
    assert all(np.array_equal(a, b) for a, b in zip(quantised, on_beat, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(quantised, at_once, strict=True))
