"""MIDI learn: an OSC touch over real UDP marks a param, a MIDI control (a real .mid file through the MidiFile
input, and MidiInput's message path: no ALSA sequencer here for virtual ports) is bound to it, saved atomically
to the mappings file keyed by the port name, and moves the param only after soft takeover; shows include the file;
`masquerade midi list|show|clear` manage it."""

import json
import socket
import subprocess
import sys
import tomllib
import urllib.request

import mido
import pytest
from pythonosc.udp_client import SimpleUDPClient

from engine import show as shows
from engine.controls import addresses, learn
from engine.controls.bus import Binding, Bus, ControlError, declare_all
from engine.controls.learn import COMMANDS, Learn, MidiMapping
from engine.controls.midi import MidiFile, MidiInput
from engine.controls.osc import Receiver
from tests.conftest import DEFAULT_MODEL, ROOT, masquerade, until

PORT = "nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0"
CONTROLLER = "nanoKONTROL2:nanoKONTROL2 MIDI 1"


def cc_file(path, values, step=480):
    """CC 7 on channel 1 through `values`, one every `step` ticks (120 BPM, 480 ticks a beat: 0.5 s)."""
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for i, v in enumerate(values):
        track.append(mido.Message("control_change", channel=0, control=7, value=v, time=0 if i == 0 else step))
    mid.save(str(path))
    return path


@pytest.fixture
def rig(tmp_path):
    bus = declare_all(Bus(), addresses.default_params(), addresses.default_bindings())
    lr = Learn(bus, tmp_path / "maps.toml", PORT)
    bus.observer = lr.observe
    rx = Receiver(bus, port=0, commands={a: lr.command for a in COMMANDS}).start()
    yield bus, lr, rx, SimpleUDPClient("127.0.0.1", rx.port)
    rx.stop()


def test_learn_binds_a_midi_file_control_to_the_touched_fader_with_soft_takeover(rig, tmp_path):
    bus, lr, rx, client = rig
    client.send_message("/masq/learn/start", 1)
    until(lambda: lr.active, what="learn on")
    client.send_message("/masq/walk/speed", 0.75)
    until(lambda: lr.touched, what="the touch")
    assert lr.touched[0] == "walk.speed"
    snap = bus.snapshot(9.0)
    assert snap.targets["walk.speed"] == pytest.approx(8 ** 0.5)

    now = [10.0]
    src = MidiFile(bus, cc_file(tmp_path / "cc.mid", [0, 64, 127]), show_time=lambda: now[0], backoff=(60.0, 60.0))
    with src:
        until(lambda: src.stats.reads == 1, what="the first CC")
        until(lambda: lr.learned, what="the binding")
        assert lr.learned == [("midi:cc/1/7", "walk.speed")]
        assert bus.snapshot(10.0).targets["walk.speed"] == pytest.approx(8 ** 0.5)  # fader at 0: not taken
        now[0] = 10.5
        until(lambda: src.stats.reads == 2, what="the second CC")
        assert bus.snapshot(10.5).targets["walk.speed"] == pytest.approx(8 ** 0.5)  # 0.5 < 0.75: still not
        now[0] = 11.0
        until(lambda: src.stats.reads == 3, what="the third CC")
        snap = bus.snapshot(11.0)  # 1.0 crossed 0.75: picked up
        assert snap.targets["walk.speed"] == pytest.approx(8.0) and snap.held_by["walk.speed"] == "midi:cc/1/7"
    saved = tomllib.loads((tmp_path / "maps.toml").read_text())
    assert saved == {CONTROLLER: {"midi:cc/1/7": {"target": "walk.speed", "curve": "exp", "invert": False,
                                                  "takeover": "soft"}}}
    assert not list(tmp_path.glob(".maps.toml*"))  # the temporary file was renamed, none left behind

    client.send_message("/masq/bookmark/recall", 3)  # a number: the pad will recall slot 3
    until(lambda: lr.touched, what="the second touch")
    port = MidiInput(bus, PORT)  # never started: handle() is a port's whole path to the bus
    port.handle(mido.Message("note_on", channel=0, note=36, velocity=90))
    assert ("midi:note/1/36", "bookmark.recall") in lr.learned
    bus.snapshot(11.5)
    port.handle(mido.Message("note_on", channel=0, note=36, velocity=127))
    snap = bus.snapshot(12.0)
    assert snap.fired("bookmark.recall") and snap["bookmark.recall"] == 3.0
    client.send_message("/masq/learn/stop", 1)
    until(lambda: not lr.active, what="learn off")
    assert learn.read(tmp_path / "maps.toml")[CONTROLLER]["midi:note/1/36"].range == (3.0, 3.0)


def test_a_control_moved_before_any_touch_or_with_learn_off_binds_nothing(rig):
    bus, lr, rx, client = rig
    port = MidiInput(bus, PORT)
    port.handle(mido.Message("control_change", channel=0, control=9, value=10))
    lr.start()
    port.handle(mido.Message("control_change", channel=0, control=9, value=11))  # nothing touched yet
    assert lr.learned == [] and not bus.routes("midi:cc/1/9")


def test_invert_range_and_jump_takeover_map_as_written():
    bus = declare_all(Bus(), addresses.default_params(), [])
    m = MidiMapping("midi:cc/1/1", "walk.energy", (0.2, 0.6), "linear", invert=True, takeover="jump")
    bus.rebind("midi:cc/1/1", [m.binding("test")])
    bus.post("midi:cc/1/1", 0.0)
    assert bus.snapshot(0.0).targets["walk.energy"] == pytest.approx(0.6)  # inverted: the bottom is the top
    bus.post("midi:cc/1/1", 1.0)
    assert bus.snapshot(0.1).targets["walk.energy"] == pytest.approx(0.2)


def test_soft_takeover_gives_way_again_after_another_source_moves_the_param():
    bus = declare_all(Bus(), addresses.default_params(),
                      [Binding("midi:cc/1/2", "walk.energy", takeover="soft"), Binding("osc:/e", "walk.energy")])
    bus.post("midi:cc/1/2", 0.01)  # within two steps of 0 (the default): taken at once
    assert bus.snapshot(0.0).held_by["walk.energy"] == "midi:cc/1/2"
    bus.post("midi:cc/1/2", 0.3)
    assert bus.snapshot(0.1).targets["walk.energy"] == pytest.approx(0.3)
    bus.post("osc:/e", 0.8)
    bus.snapshot(0.2)
    bus.post("midi:cc/1/2", 0.35)  # the fader is at 0.35, the param at 0.8: no jump
    assert bus.snapshot(0.3).targets["walk.energy"] == pytest.approx(0.8)
    bus.post("midi:cc/1/2", 0.9)  # crossed 0.8
    assert bus.snapshot(0.4).targets["walk.energy"] == pytest.approx(0.9)


def write_show(tmp_path, mappings_text, port="nanoKONTROL2"):
    (tmp_path / "maps.toml").write_text(mappings_text)
    path = tmp_path / "show.toml"
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[midi]\nport = "{port}"\nmappings = "maps.toml"\n')
    return path


def test_a_show_includes_the_mappings_of_its_controller(tmp_path):
    learn.write(tmp_path / "maps.toml", {CONTROLLER: {"midi:cc/1/7": MidiMapping("midi:cc/1/7", "walk.speed", None,
                                                                                   "exp")},
                                         "APC mini": {"midi:cc/1/7": MidiMapping("midi:cc/1/7", "walk.energy")}})
    path = tmp_path / "show.toml"
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[midi]\nport = "nanokontrol"\nmappings = "maps.toml"\n')
    rows = [b for b in shows.load(path).bindings if b.source == "midi:cc/1/7"]
    assert [(b.target, b.curve, b.takeover) for b in rows] == [("walk.speed", "exp", "soft")]


@pytest.mark.parametrize("row, key", [
    ('"midi:cc/1/7" = { target = "walk.speed", range = [0.0, nan] }', "range"),
    ('"midi:cc/1/7" = { target = "walk.speed", range = [0.5, 99.0] }', "range"),
    ('"midi:cc/1/7" = { target = "walk.sped" }', "target"),
    ('"midi:cc/1/7" = { target = "walk.speed", curve = "log" }', "curve"),
    ('"midi:cc/17/7" = { target = "walk.speed" }', "midi:cc/17/7"),
    ('"midi:cc/1/7" = { target = "walk.speed", takeover = "maybe" }', "takeover"),
    ('"midi:cc/1/7" = { target = "walk.speed", colour = 1 }', "colour"),
])
def test_a_bad_mapping_is_one_line_naming_the_file_and_the_key(tmp_path, row, key):
    path = write_show(tmp_path, f'["nanoKONTROL2"]\n{row}\n')
    with pytest.raises(shows.ShowError) as e:
        shows.load(path)
    text = str(e.value)
    assert "maps.toml" in text and key in text and "\n" not in text


def test_the_midi_command_lists_shows_and_clears(tmp_path):
    maps = tmp_path / "maps.toml"
    learn.write(maps, {CONTROLLER: {"midi:cc/1/7": MidiMapping("midi:cc/1/7", "walk.speed", (0.5, 2.0), "exp"),
                                    "midi:cc/1/8": MidiMapping("midi:cc/1/8", "walk.energy", invert=True)}})
    r = masquerade("midi", "list", maps, timeout=60)
    assert r.returncode == 0 and "MIDI inputs:" in r.stdout and f"{CONTROLLER}: 2 mappings" in r.stdout, r.stderr
    r = masquerade("midi", "show", maps, "nano", timeout=60)
    assert r.returncode == 0 and "midi:cc/1/7 -> walk.speed  0.5..2  exp" in r.stdout and "inverted" in r.stdout
    r = masquerade("midi", "clear", maps, "nano", "--source", "midi:cc/1/8", timeout=60)
    assert r.returncode == 0 and "removed 1 mapping" in r.stdout
    assert list(learn.read(maps)[CONTROLLER]) == ["midi:cc/1/7"]
    maps.write_text('["x"]\n"midi:cc/1/7" = { target = "walk.speed", range = [1, "a"] }\n')
    r = masquerade("midi", "show", maps, timeout=60)
    assert r.returncode == 2 and "maps.toml" in r.stderr and "range" in r.stderr and len(r.stderr.splitlines()) == 1


def test_a_broken_mappings_file_is_never_overwritten_by_learn(tmp_path):
    bus = declare_all(Bus(), addresses.default_params(), addresses.default_bindings())
    (tmp_path / "maps.toml").write_text("not toml [")
    lr = Learn(bus, tmp_path / "maps.toml", PORT)
    bus.observer = lr.observe
    lr.start()
    bus.post("osc:/masq/walk/energy", 0.5)
    bus.post("midi:cc/1/3", 0.5)
    assert lr.learned == [("midi:cc/1/3", "walk.energy")] and "not valid TOML" in lr.error
    assert (tmp_path / "maps.toml").read_text() == "not toml ["
    with pytest.raises(ControlError, match="maps.toml: not valid TOML"):
        learn.read(tmp_path / "maps.toml")


def free_port(kind=socket.SOCK_DGRAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_live_run_learns_from_its_midi_file_and_serves_oscquery(tmp_path):
    """The engine as run on stage (headless): OSCQuery answers, /masq/learn/start and a touch over UDP, and the
    show's own [midi] file (the code path a port's messages take to the bus) is learned and saved."""
    cc_file(tmp_path / "ramp.mid", [(i * 7) % 128 for i in range(400)], step=120)  # a CC every 0.125 s
    osc_port, query_port = free_port(), free_port(socket.SOCK_STREAM)
    path = tmp_path / "live.toml"
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[output]\nsize = [64, 64]\nfps = 10\n'
                    f'[osc]\nport = {osc_port}\nquery_port = {query_port}\n'
                    '[midi]\nfile = "ramp.mid"\nmappings = "maps.toml"\n')
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", str(path), "--headless", "--frames", "400"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def query():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{query_port}/masq/walk/energy", timeout=2) as r:
                    return json.loads(r.read())
            except OSError:
                return None
        node = until(query, timeout=120, what="OSCQuery")
        assert node["FULL_PATH"] == "/masq/walk/energy" and node["TYPE"] == "f"
        client = SimpleUDPClient("127.0.0.1", osc_port)
        client.send_message("/masq/learn/start", 1)
        client.send_message("/masq/walk/energy", 0.5)
        until(lambda: (tmp_path / "maps.toml").exists(), timeout=60, what="the mappings file")
        saved = learn.read(tmp_path / "maps.toml")
        assert saved == {"ramp.mid": {"midi:cc/1/7": MidiMapping("midi:cc/1/7", "walk.energy")}}
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "MIDI learn: midi:cc/1/7 -> walk.energy" in err, err[-2000:]
