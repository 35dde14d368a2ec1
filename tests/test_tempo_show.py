"""The show's beat: tap tempo over OSC moves beat-locked walks, and `tempo:*` sources drive bindings."""

import pytest
import torch

from engine import show as shows
from engine.controls.record import Recording
from engine.controls.state import ControlState
from engine.frame import Tick
from engine.pipeline import Pipeline, make_bus

from .conftest import DEFAULT_MODEL

BEATS = f'[model]\npath = "{DEFAULT_MODEL}"\n[walk]\nkind = "beats"\nbpm = 120.0\nbeats_per_keyframe = 1\n' \
        'transition = 0.0\n'


def pipeline(tmp_path, text, **state):
    path = tmp_path / "show.toml"
    path.write_text(text)
    show = shows.load(path)
    return Pipeline(show, "cpu", ControlState(make_bus(show), **state))


def cuts(p, taps=(), until=8.0, fps=20):
    """Show times where the picture changed, while `taps` arrive as /masq/tempo/tap at their times."""
    pending, out, last = sorted(taps), [], None
    for i in range(round(until * fps) + 1):
        t = i / fps
        while pending and pending[0] <= t:
            p.controls.bus.post("osc:/masq/tempo/tap", 1, at=pending.pop(0))
        image = p.generate(Tick(i, t)).image
        if last is not None and (image - last).abs().max() > 1e-3:
            out.append(round(t, 3))
        last = image
    return out


def test_the_beats_walk_cuts_on_its_bpm_and_follows_tap_tempo(tmp_path):
    assert cuts(pipeline(tmp_path, BEATS), until=3.0) == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]  # 120 BPM
    p = pipeline(tmp_path, BEATS)
    taps = [2.05, 2.8, 3.55, 4.3]  # 80 BPM, off the old grid
    seen = cuts(p, taps)
    assert p.tempo.bpm == pytest.approx(80) and p.walk.bpm == pytest.approx(80)
    after = [t for t in seen if t > 4.3]
    assert after == pytest.approx([5.05, 5.8, 6.55, 7.3], abs=0.051)  # every 0.75 s from the last tap


def test_tempo_sources_drive_bindings_and_a_recording_replays_the_taps(tmp_path):
    text = (f'[model]\npath = "{DEFAULT_MODEL}"\n[walk]\nseconds_per_keyframe = 100.0\n[tempo]\nbpm = 60.0\n'
            '[[bind]]\nsource = "tempo:beat"\ntarget = "walk.next_keyframe"\n')
    live = pipeline(tmp_path, text, record=True)
    live_cuts = cuts(live, taps=[3.0, 3.5, 4.0], until=6.0)
    assert live_cuts[:3] == [1.0, 2.0, 3.0]  # a keyframe a beat at 60 BPM ...
    assert live_cuts[3:] == [3.5, 4.0, 4.5, 5.0, 5.5, 6.0]  # ... then on the tapped 120 BPM, from the tap
    events = live.controls.bus.recording.events
    assert {e.source for e in events} == {"osc:/masq/tempo/tap"}  # tempo:* is derived again on replay
    replayed = pipeline(tmp_path, text, replay=Recording(events))
    assert cuts(replayed, until=6.0) == live_cuts


def test_a_bpm_fader_sets_the_tempo(tmp_path):
    p = pipeline(tmp_path, BEATS)
    p.controls.bus.post("osc:/masq/tempo/bpm", 60.0, at=1.0)
    seen = cuts(p, until=4.0)
    assert p.walk.bpm == 60.0 and [t for t in seen if t > 1.0] == [2.0, 3.0, 4.0]
    assert torch.is_tensor(p.walk.keys)


def test_an_ableton_link_session_leads_the_beat(tmp_path):
    import time

    from engine.controls.tempo import LinkClock

    if not LinkClock.available():
        pytest.skip("no Ableton Link binding installed (pip install aalink)")
    p = pipeline(tmp_path, BEATS)
    p.link = LinkClock(120).start()
    ableton = LinkClock(90).start()  # another peer on this machine, as Ableton Live would be
    try:
        deadline = time.monotonic() + 10
        while (p.link.now() or {}).get("tempo:peers", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        ableton._link.tempo = 96.0  # the other peer changes the session's tempo
        deadline = time.monotonic() + 10
        while abs(p.link.now()["tempo:bpm"] - 96) > 0.01 and time.monotonic() < deadline:
            time.sleep(0.05)
        p.generate(Tick(0, 1.0))
        assert p.tempo.bpm == pytest.approx(96, abs=0.01) and p.walk.bpm == pytest.approx(96, abs=0.01)
        beats = p.link.now()["tempo:beat_count"]
        assert p.tempo.beats_at(1.0) == pytest.approx(beats, abs=0.2)  # the show's beat is the session's
    finally:
        ableton.stop()
        p.link.stop()
