"""MIDI in a show: a .mid file drives bindings frame-exact; a MIDI port that is not there never stops it."""

import mido
import numpy as np
from PIL import Image

from .conftest import DEFAULT_MODEL, masquerade


def cc_ramp(path):
    """Controller 7 on channel 1 swept from 0 to 127 over the second half-second."""
    mid = mido.MidiFile(ticks_per_beat=480)  # 120 BPM: 960 ticks a second
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.Message("control_change", channel=0, control=7, value=0, time=0))
    for i in range(1, 11):
        track.append(mido.Message("control_change", channel=0, control=7, value=min(127, i * 13), time=48))
    track.append(mido.Message("note_on", channel=0, note=60, velocity=100, time=480))
    mid.save(str(path))
    return path


def show_with(tmp_path, midi: str, name: str):
    path = tmp_path / name
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[output]\nsize = [64, 64]\nfps = 20\n{midi}'
                    '[[bind]]\nsource = "midi:cc/1/7"\ntarget = "walk.speed"\ncurve = "exp"\n')
    return path


def frames(folder):
    return [np.asarray(Image.open(p)) for p in sorted(folder.iterdir())]


def test_midi_file_drives_the_render_frame_exact(tmp_path):
    mid = cc_ramp(tmp_path / "sweep.mid")
    driven = show_with(tmp_path, f'[midi]\nfile = "{mid.name}"\n', "driven.toml")
    plain = show_with(tmp_path, "", "plain.toml")
    outs = {}
    for name, show in (("a", driven), ("b", driven), ("plain", plain)):
        r = masquerade("render", show, "-o", tmp_path / name, "--seconds", 2)
        assert r.returncode == 0, r.stderr
        outs[name] = frames(tmp_path / name)
    assert all(np.array_equal(x, y) for x, y in zip(outs["a"], outs["b"], strict=True))
    assert np.array_equal(outs["a"][0], outs["plain"][0])  # before the sweep: the plain walk
    assert np.abs(outs["a"][-1].astype(int) - outs["plain"][-1]).mean() > 3  # after it: 8x faster


def test_missing_midi_port_never_stops_the_show(tmp_path):
    show = show_with(tmp_path, '[midi]\nport = "No Such Controller"\n', "port.toml")
    r = masquerade("run", show, "--headless", "--frames", 10, "--osc-port", 0)
    assert r.returncode == 0, r.stderr
    assert "midi lost" in r.stderr


def test_missing_midi_file_is_named(tmp_path):
    show = show_with(tmp_path, '[midi]\nfile = "gone.mid"\n', "bad.toml")
    r = masquerade("render", show, "-o", tmp_path / "x", "--seconds", 1)
    assert r.returncode == 2 and "gone.mid: no such MIDI file" in r.stderr
