"""MIDI: the message mapping (no port needed), a fake port through the real thread (unplugged -> lost), the
real backend without a MIDI system (lost with a reason), and a .mid file paced in show time."""

import threading
import time

import mido
import pytest

from engine.controls import midi
from engine.controls.bus import Binding, Bus, Param, declare_all
from engine.controls.midi import MidiFile, MidiInput, events_of, file_events, find_port
from engine.controls.source import DeviceLost
from tests.conftest import until


class Recorder:
    def __init__(self):
        self.events, self.lock = [], threading.Lock()

    def post(self, source, value, at=None):
        with self.lock:
            self.events.append((source, value, at))

    def release(self, source, at=None):
        with self.lock:
            self.events.append((source, None, at))


def test_messages_map_to_sources_and_values():
    m = mido.Message
    assert events_of(m("control_change", channel=0, control=7, value=127)) == [("midi:cc/1/7", 1.0)]
    assert events_of(m("control_change", channel=15, control=1, value=0)) == [("midi:cc/16/1", 0.0)]
    assert events_of(m("note_on", channel=9, note=36, velocity=64)) == [("midi:note/10/36", 64 / 127)]
    assert events_of(m("note_on", channel=0, note=60, velocity=0)) == [("midi:note/1/60", 0.0)]
    assert events_of(m("note_off", channel=0, note=60, velocity=50)) == [("midi:note/1/60", 0.0)]
    assert events_of(m("pitchwheel", channel=1, pitch=8191)) == [("midi:pitch/2", 1.0)]
    assert events_of(m("pitchwheel", channel=1, pitch=-8192)) == [("midi:pitch/2", -1.0)]
    assert events_of(m("program_change", channel=0, program=4)) == [("midi:program/1", 5.0)]
    assert events_of(m("clock")) == [] and events_of(m("sysex", data=[1, 2])) == []


def test_handle_reaches_a_real_bus_without_a_port():
    bus = declare_all(Bus(), [Param("walk.energy"), Param("bookmark.recall", 0.0, 0.0, 1.0, trigger=True)],
                      [Binding("midi:cc/1/7", "walk.energy"), Binding("midi:note/1/36", "bookmark.recall")])
    source = MidiInput(bus)  # never started: handle() is the whole path from a message to the bus
    source.handle(mido.Message("control_change", channel=0, control=7, value=64))
    source.handle(mido.Message("note_on", channel=0, note=36, velocity=127))
    snap = bus.snapshot(0.0)
    assert snap["walk.energy"] == pytest.approx(64 / 127) and snap.triggers == {"bookmark.recall"}
    source.handle(mido.Message("note_off", channel=0, note=36))
    assert bus.snapshot(0.1).triggers == frozenset()  # the release does not fire again
    assert source.stats.reads == 3 and source.stats.posted == 3


def test_port_names_match_in_part():
    names = ["Midi Through:Midi Through Port-0 14:0", "nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0"]
    assert find_port("nanokontrol2", names) == names[1]
    assert find_port(None, names) == names[0]
    with pytest.raises(DeviceLost, match="no MIDI input named 'APC'"):
        find_port("APC", names)
    with pytest.raises(DeviceLost, match="no MIDI input ports"):
        find_port(None, [])


class FakePort:
    def __init__(self, messages):
        self.messages, self.closed = list(messages), False

    def iter_pending(self):
        while self.messages:
            yield self.messages.pop(0)

    def close(self):
        self.closed = True


def test_a_port_delivers_then_is_unplugged_and_lost(monkeypatch):
    names = ["nanoKONTROL2:nanoKONTROL2 MIDI 1 20:0"]
    monkeypatch.setattr(midi.mido, "get_input_names", lambda: list(names))
    monkeypatch.setattr(midi, "PORT_CHECK_SECONDS", 0.02)
    port = FakePort([mido.Message("control_change", channel=0, control=7, value=127)])
    bus = Recorder()
    src = MidiInput(bus, "nanokontrol", opener=lambda name: port, backoff=(0.05, 0.1))
    with src:
        until(lambda: bus.events, what="the CC")
        assert src.state == "connected" and src.opened_name == names[0]
        assert bus.events[0] == ("midi:cc/1/7", 1.0, None)
        names.clear()  # unplugged
        until(lambda: src.state == "lost" or src.stats.losses, what="the loss")
        assert "unplugged" in src.reason or "no MIDI input ports" in src.reason
        until(lambda: ("midi:cc/1/7", None, None) in bus.events, what="the release")
    assert port.closed and src.stats.errors == 0


def test_without_a_midi_system_the_input_is_lost_with_a_reason():
    src = MidiInput(Recorder(), "nanoKONTROL2", backoff=(0.05, 0.1))
    with src:
        until(lambda: src.stats.attempts >= 2, what="two attempts")
        assert src.state in ("lost", "reconnecting")
        assert "MIDI" in src.reason, src.reason  # "no MIDI backend ..." here, "no MIDI input named ..." elsewhere
    assert src.stats.connects == 0 and src.stats.errors == 0


def write_mid(path):
    """120 BPM, 480 ticks a beat: CC 7 = 127 at 0 s, note 60 on at 0.5 s and off at 0.75 s."""
    f = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    track += [mido.MetaMessage("set_tempo", tempo=500_000, time=0),
              mido.Message("control_change", control=7, value=127, time=0),
              mido.Message("note_on", note=60, velocity=100, time=480),
              mido.Message("note_off", note=60, time=240)]
    f.tracks.append(track)
    f.save(str(path))
    return path


def test_a_midi_file_lists_its_events_in_seconds(tmp_path):
    events = file_events(write_mid(tmp_path / "a.mid"))
    assert events == [(0.0, "midi:cc/1/7", 1.0), (pytest.approx(0.5), "midi:note/1/60", 100 / 127),
                      (pytest.approx(0.75), "midi:note/1/60", 0.0)]


def test_a_midi_file_is_paced_in_show_time(tmp_path):
    path = write_mid(tmp_path / "a.mid")
    now = [10.0]  # the show's clock, moved by hand
    bus = declare_all(Bus(), [Param("walk.energy"), Param("glow")],
                      [Binding("midi:cc/1/7", "walk.energy"), Binding("midi:note/1/60", "glow")])
    src = MidiFile(bus, path, show_time=lambda: now[0], backoff=(60.0, 60.0))
    with src:
        until(lambda: src.stats.reads == 1, what="the CC at 0 s")
        time.sleep(0.05)
        assert src.stats.reads == 1  # the note is not due yet
        now[0] = 10.6
        until(lambda: src.stats.reads == 2, what="the note at 0.5 s")
        snap = bus.snapshot(10.49)
        assert snap["walk.energy"] == 1.0 and snap["glow"] == 0.0  # scheduled at 10.5: not before
        assert bus.snapshot(10.6)["glow"] == pytest.approx(100 / 127)
        now[0] = 11.0
        until(lambda: src.state == "lost", what="the end of the file")
        assert src.reason == "end of file" and src.stats.reads == 3
        assert bus.snapshot(11.0)["glow"] == 0.0
