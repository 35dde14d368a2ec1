"""DMX in (engine/controls/dmx.py): Art-Net and sACN packets built by the protocols' own Python senders
(stupidArtnet's ArtDmx, the sacn package's DataPacket), parsed as pure functions and sent for real over
loopback to a running input; malformed packets, strangers and floods are counted, never raised.
Every socket is on 127.0.0.1 with a port the system picks; every wait is bounded."""

import socket
import time

import pytest
from sacn import DataPacket
from stupidArtnet import StupidArtnet

from engine.cli import main
from engine.controls.bus import Binding, Bus, ControlError, Param, declare_all
from engine.controls.dmx import DmxInput, Malformed, parse_artnet, parse_sacn, parse_source
from engine.controls.gate import Allowlist, RateLimit
from tests.conftest import until

CID = tuple(range(16))


def artnet(universe=1, levels=b"", port=6454, size=512):
    """An ArtDmx datagram as stupidArtnet sends it (its `show()`: header + buffer)."""
    sender = StupidArtnet("127.0.0.1", universe, size, port=port)
    buffer = bytearray(sender.packet_size)
    buffer[:len(levels)] = levels
    sender.set(buffer)
    data = bytes(sender.packet_header + sender.buffer)
    sender.close()
    return data


def sacn(universe=1, levels=(), sequence=0, **options):
    """An E1.31 data packet as the sacn package's sender builds it."""
    return bytes(DataPacket(cid=CID, sourceName="desk", universe=universe, dmxData=tuple(levels), sequence=sequence,
                            **options).getBytes())


# --- packets, without sockets ---

def test_artnet_packets_from_stupidartnet_parse():
    levels = bytes([0] * 16 + [51, 255])
    frame = parse_artnet(artnet(1, levels))
    assert frame.universe == 1 and frame.sequence == 0 and len(frame.levels) == 512
    assert frame.levels[16] == 51 and frame.levels[17] == 255
    assert parse_artnet(artnet(300, b"\x07", size=2)).universe == 300  # Port-Address low byte first, then Net


def test_sacn_packets_from_the_sacn_package_parse():
    frame = parse_sacn(sacn(7, [0] * 16 + [51], sequence=9))
    assert (frame.universe, frame.sequence, frame.levels[16], frame.terminated) == (7, 9, 51, False)
    assert parse_sacn(sacn(7, [1], streamTerminated=True)).terminated
    assert parse_sacn(sacn(7, [1], dmxStartCode=0xDD)) is None  # per-channel priority, not levels
    assert parse_sacn(sacn(7, [1], previewData=True)) is None


@pytest.mark.parametrize("data, why", [
    (b"", "no Art-Net header"),
    (b"Art-Net\x00\x00\x50\x00", "shorter"),
    (b"Art-Nyt\x00" + artnet()[8:], "no Art-Net header"),
    (artnet()[:100], "says 512 channels but carries 82"),  # wrong length: truncated
    (artnet() + b"\x00", "carries 513"),  # wrong length: trailing bytes
    (artnet()[:16] + b"\x02\x02" + artnet()[18:], "out of range"),  # length 514
    (artnet()[:15] + b"\x80" + artnet()[16:], "Net 128"),  # universe out of range
    (artnet()[:10] + b"\x00\x0d" + artnet()[12:], "version 13"),
])
def test_malformed_artnet_is_refused(data, why):
    with pytest.raises(Malformed, match=why):
        parse_artnet(data)


def test_artnet_other_opcodes_are_ignored_not_malformed():
    poll = b"Art-Net\x00\x00\x20\x00\x0e\x00\x00"  # ArtPoll
    assert parse_artnet(poll) is None


def sacn_with(data, at, value):
    return data[:at] + value + data[at + len(value):]


@pytest.mark.parametrize("make, why", [
    (lambda d: b"\x00" * 200, "no ACN root layer"),
    (lambda d: d[:120], "shorter than 126"),
    (lambda d: d[:-1], "does not match"),  # wrong length
    (lambda d: d + b"\x00", "does not match"),
    (lambda d: sacn_with(d, 113, b"\x00\x00"), "universe"),  # universe 0: out of range
    (lambda d: sacn_with(d, 113, b"\xfa\x00"), "universe"),  # 64000
    (lambda d: sacn_with(d, 40, b"\x00\x00\x00\x09"), "vectors"),
    (lambda d: sacn_with(d, 108, bytes([201])), "priority"),
])
def test_malformed_sacn_is_refused(make, why):
    with pytest.raises(Malformed, match=why):
        parse_sacn(make(sacn(1, [5] * 512)))


def test_sources_and_settings_are_checked():
    assert parse_source("dmx:1/17") == (1, 17) and parse_source("2/512") == (2, 512)
    assert parse_source("dmx:1/x") is None and parse_source("dmx:1") is None and parse_source("dmx:-1/2") is None
    with pytest.raises(ControlError, match="universe must be a whole number 1..63999 for sacn"):
        DmxInput(Bus(), protocol="sacn", universe=0)
    with pytest.raises(ControlError, match="start \\+ channels - 1"):
        DmxInput(Bus(), start=500, channels=20)
    with pytest.raises(ControlError, match="timeout"):
        DmxInput(Bus(), timeout=float("nan"))
    with pytest.raises(ControlError, match="allow"):
        DmxInput(Bus(), allow=("not a network",))
    with pytest.raises(ControlError, match="host"):
        DmxInput(Bus(), host="localhost:6454")


def test_allowlist_and_rate_limit():
    allow = Allowlist(("10.0.0.0/8",))
    assert allow.allows("10.1.2.3") and allow.allows("::ffff:10.0.0.1") and not allow.allows("127.0.0.1")
    assert not allow.allows("not an address")
    rate = RateLimit(5)
    assert [rate.take("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert rate.take("b", 0.0) and rate.take("a", 0.2)  # per sender; refilled at 5 a second


# --- over loopback ---

def make_bus():
    return declare_all(Bus(), [Param("glow", 0.0, -2.0, 2.0), Param("walk.energy")],
                       [Binding("dmx:1/17", "glow"), Binding("dmx:1/18", "walk.energy")])


def started(bus, **options):
    source = DmxInput(bus, artnet_port=0, sacn_port=0, backoff=(0.05, 0.1), **options).start()
    until(lambda: source.state == "connected", timeout=5, what="the DMX sockets")
    return source


def send(data, port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, ("127.0.0.1", port))


def moves_to(bus, param, value, t=[0.0]):  # noqa: B006 - show time only moves forward
    def check():
        t[0] += 0.01
        return bus.snapshot(t[0])[param] == pytest.approx(value)
    return until(check, timeout=5, what=f"{param} = {value}")


def test_artnet_and_sacn_over_loopback_move_the_bound_params():
    bus = make_bus()
    src = started(bus, protocol="both", start=10, channels=20)
    try:
        sender = StupidArtnet("127.0.0.1", 1, 512, port=src.port("artnet"))  # the library's own sender
        sender.set_single_value(17, 51)
        sender.set_single_value(18, 255)
        sender.show()
        sender.close()
        moves_to(bus, "glow", -2.0 + 51 / 255 * 4.0)  # 0..255 onto the param's -2..2
        moves_to(bus, "walk.energy", 1.0)
        send(sacn(1, [0] * 16 + [255, 0], sequence=1), src.port("sacn"))
        moves_to(bus, "glow", 2.0)
        moves_to(bus, "walk.energy", 0.0)
        stats = src.stats
        assert stats.frames == 2 and stats.malformed == 0 and stats.errors == 0
        assert stats.posted == 4  # bound channels only, and only when they change
    finally:
        src.stop()


def test_malformed_packets_are_counted_and_the_input_carries_on():
    bus = make_bus()
    src = started(bus)
    try:
        send(b"Art-Net\x00\x00\x50\x00\x0e\x00\x00\x01\x00\x02\x00\x07", src.port("artnet"))  # says 512, holds 1
        send(sacn(1, [9] * 512)[:-3], src.port("sacn"))  # wrong length
        send(b"\xff" * 700, src.port("sacn"))
        until(lambda: src.stats.malformed == 3, timeout=5, what="three malformed packets counted")
        assert src.running and src.state == "connected" and src.stats.errors == 0
        send(sacn(1, [0] * 16 + [255]), src.port("sacn"))
        moves_to(bus, "glow", 2.0)
    finally:
        src.stop()


def test_a_sender_outside_the_allowlist_is_ignored():
    bus = make_bus()
    src = started(bus, allow=("10.0.0.0/8",))  # this machine is not on it
    try:
        send(sacn(1, [0] * 16 + [255]), src.port("sacn"))
        send(artnet(1, bytes([0] * 16 + [255])), src.port("artnet"))
        until(lambda: src.stats.disallowed == 2, timeout=5, what="two refused packets")
        assert bus.snapshot(1.0)["glow"] == 0.0 and src.stats.frames == 0
    finally:
        src.stop()


def test_other_universes_late_packets_and_termination():
    bus = make_bus()
    src = started(bus, protocol="sacn", timeout=60)
    port = src.port("sacn")
    try:
        send(sacn(2, [0] * 16 + [255], sequence=1), port)  # another universe
        send(sacn(1, [0] * 16 + [255], sequence=50), port)
        send(sacn(1, [0] * 16 + [0], sequence=45), port)  # 5 behind: late
        until(lambda: src.stats.late == 1 and src.stats.other_universe == 1, timeout=5, what="late and other")
        moves_to(bus, "glow", 2.0)
        send(sacn(1, [0] * 16 + [255], sequence=51, streamTerminated=True), port)
        until(lambda: src.stats.released == 1, timeout=5, what="the termination")
        assert bus.routes("dmx:1/17") and bus.snapshot(5.0)["glow"] == 2.0  # released: it holds
    finally:
        src.stop()


def test_a_flood_is_cut_to_the_senders_rate():
    src = started(make_bus(), protocol="sacn", max_per_second=2)
    try:
        for i in range(40):
            send(sacn(1, [0] * 16 + [i], sequence=i + 1), src.port("sacn"))
        until(lambda: src.stats.packets == 40, timeout=5, what="all 40 packets read")
        assert src.stats.rate_limited >= 30 and src.stats.frames + src.stats.rate_limited == 40 and src.running
    finally:
        src.stop()


def test_a_port_in_use_is_lost_with_a_reason_not_raised():
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        src = DmxInput(make_bus(), protocol="artnet", artnet_port=taken.getsockname()[1], backoff=(0.05, 0.1)).start()
        try:
            until(lambda: src.stats.attempts >= 2, timeout=5, what="two attempts")
            assert src.state in ("lost", "reconnecting") and "cannot listen for artnet" in src.reason
        finally:
            src.stop()
    finally:
        taken.close()


def test_stop_is_prompt():
    src = started(make_bus())
    t0 = time.monotonic()
    src.stop()
    assert time.monotonic() - t0 < 1.0 and not src.running


# --- the show file ---

def load(tmp_path, text):
    from engine import show

    path = tmp_path / "d.toml"
    path.write_text(text)
    return show.load(path)


def test_a_show_declares_dmx_and_binds_channels(tmp_path):
    s = load(tmp_path, '[dmx]\nprotocol = "both"\nuniverse = 3\nstart = 17\nchannels = 4\n'
                       '[[bind]]\nsource = "dmx:3/18"\ntarget = "walk.energy"\n')
    assert (s.dmx.protocol, s.dmx.universe, s.dmx.start, s.dmx.channels) == ("both", 3, 17, 4)
    assert s.dmx.host == "127.0.0.1" and s.dmx.allow == ("127.0.0.0/8", "::1/128")  # closed by default
    src = DmxInput.from_show(Bus(), s.dmx)
    assert src.universe == 3 and src.protocols == ("artnet", "sacn")


@pytest.mark.parametrize("text, key", [
    ('[dmx]\nprotocol = "dmx512"\n', "dmx.protocol"),
    ('[dmx]\nprotocol = "artnet"\nuniverse = 40000\n', "dmx.universe"),
    ('[dmx]\nprotocol = "sacn"\nuniverse = 0\n', "dmx.universe"),
    ('[dmx]\nprotocol = "sacn"\ntimeout = inf\n', "dmx.timeout"),
    ('[dmx]\nprotocol = "sacn"\nmax_per_second = nan\n', "dmx.max_per_second"),
    ('[dmx]\nprotocol = "sacn"\nstart = 0\n', "dmx.start"),
    ('[dmx]\nprotocol = "sacn"\nallow = ["10.0.0.0/33"]\n', "dmx.allow"),
    ('[dmx]\nprotocol = "sacn"\nhost = "desk.local"\n', "dmx.host"),
    ('[dmx]\nport = 6454\n', "dmx.port"),
    ('[[bind]]\nsource = "dmx:1/1"\ntarget = "walk.energy"\n', "[[bind]] #1"),
    ('[dmx]\nprotocol = "sacn"\nstart = 10\nchannels = 2\n[[bind]]\nsource = "dmx:1/17"\ntarget = "walk.energy"\n',
     "[[bind]] #1"),
])
def test_bad_dmx_keys_are_one_line_naming_file_and_key_exit_2(tmp_path, capsys, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["controllers", "touchosc", "-o", str(tmp_path / "m.tosc"), "--show", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bad.toml" in err and key in err, err

