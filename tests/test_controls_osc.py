"""OSC input over real UDP on 127.0.0.1: mapping, bundles, garbage, allowlist, floods, feedback, address space."""

import json
import socket
import struct
import threading
import time

import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

from engine.controls import addresses
from engine.controls.bus import Binding, Bus, ControlError, declare_all
from engine.controls.osc import Receiver, parse, parse_address
from tests.conftest import until as _until

from .conftest import ROOT


def settle(read, quiet=0.05, timeout=3.0):
    """Poll `read()` until it has not changed for `quiet` seconds."""
    last, since, deadline = read(), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.005)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    raise AssertionError("still changing")


def message(address, *args) -> bytes:
    builder = OscMessageBuilder(address)
    for a in args:
        builder.add_arg(a)
    return builder.build().dgram


def bundle(when, *dgrams) -> bytes:
    builder = OscBundleBuilder(when)
    for d in dgrams:
        builder.add_content(OscMessage(d))
    return builder.build().dgram


def default_bus(*extra) -> Bus:
    return declare_all(Bus(), addresses.default_params(), [*addresses.default_bindings(), *extra])


@pytest.fixture
def raw():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield sock
    sock.close()


@pytest.fixture
def rx():
    base = time.time()  # show time = seconds since the test began
    receiver = Receiver(default_bus(), host="127.0.0.1", port=0, to_show_time=lambda unix: unix - base)
    receiver.base = base
    with receiver:
        yield receiver


def test_a_fader_reaches_the_snapshot_through_its_curve(rx):
    assert rx.port != 0 and rx.running
    SimpleUDPClient("127.0.0.1", rx.port).send_message("/masq/walk/speed", 0.75)
    snap = until(lambda: (s := rx.bus.snapshot(0.0)).held_by["walk.speed"] and s, what="the fader")
    assert snap.targets["walk.speed"] == pytest.approx(8 ** 0.5)  # exp 1/8..8: three quarters up is sqrt(8)
    assert rx.bus.snapshot(10.0)["walk.speed"] == pytest.approx(8 ** 0.5)  # smoothing has caught up
    assert rx.stats.posted == 1 and rx.stats.packets == 1


def test_buttons_and_numbers_fire_triggers(rx):
    client = SimpleUDPClient("127.0.0.1", rx.port)
    client.send_message("/masq/keyframe/next", None)  # no argument: a press
    client.send_message("/masq/bookmark/recall", 3)
    client.send_message("/masq/scene/cue", 0)  # a release: ignored
    until(lambda: rx.stats.posted == 3, what="three messages")
    snap = rx.bus.snapshot(0.0)
    assert snap.triggers == {"walk.next_keyframe", "bookmark.recall"} and snap["bookmark.recall"] == 3.0


def test_a_bundle_with_a_future_time_tag_applies_at_its_time_not_before(rx, raw):
    raw.sendto(bundle(rx.base + 5.0, message("/masq/walk/energy", 0.5)), ("127.0.0.1", rx.port))
    raw.sendto(bundle(IMMEDIATELY, message("/masq/walk/truncation", 0.25)), ("127.0.0.1", rx.port))
    until(lambda: rx.stats.posted == 2, what="both bundles")
    assert rx.stats.scheduled == 1
    snap = rx.bus.snapshot(1.0)
    assert snap.targets["walk.truncation"] == 0.25  # immediate: the next frame
    assert snap.targets["walk.energy"] == 0.0
    assert rx.bus.snapshot(4.9).targets["walk.energy"] == 0.0
    assert rx.bus.snapshot(5.1).targets["walk.energy"] == 0.5


def test_a_bundle_scheduled_absurdly_far_ahead_is_dropped(rx, raw):
    raw.sendto(bundle(time.time() + 3600, message("/masq/walk/energy", 0.5)), ("127.0.0.1", rx.port))
    until(lambda: rx.stats.too_far_ahead == 1, what="the drop")
    assert rx.stats.posted == 0


def test_nested_bundles_keep_the_outer_time_unless_they_have_their_own():
    inner = bundle(IMMEDIATELY, message("/a", 1.0))
    outer = OscBundleBuilder(1000.0)
    outer.add_content(OscMessage(message("/b", 2.0)))
    dgram = outer.build().dgram + struct.pack(">i", len(inner)) + inner
    (t_b, b), (t_a, a) = parse(dgram)
    assert (b.address, a.address) == ("/b", "/a") and t_a == t_b == pytest.approx(1000.0, abs=1e-6)


def test_garbage_is_counted_and_the_receiver_keeps_working(rx, raw):
    good = bundle(IMMEDIATELY, message("/masq/walk/energy", 0.5))
    # an element size of -4 sends python-osc's own OscBundle into an endless loop
    negative_size = b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", -4) + b"\x00" * 4
    malformed = [b"\xde\xad\xbe\xef", b"", good[:-3], negative_size, b"/masq/walk/energy", message("/x", 1.0)[:-12],
                 b"/masq\x00\x00\x00,f[\x00" + b"\x00" * 4]
    bad_args = [message("/masq/walk/energy", "loud"), message("/masq/walk/energy", b"\x01\x02"),
                message("/masq/walk/energy", 0.1, 0.2), message("/masq/walk/energy", float("nan"))]
    for dgram in malformed + bad_args:
        raw.sendto(dgram, ("127.0.0.1", rx.port))
    raw.sendto(message("/masq/walk/energy", 0.75), ("127.0.0.1", rx.port))
    until(lambda: rx.bus.snapshot(0.0).targets["walk.energy"] == 0.75, what="the good message after the garbage")
    stats = rx.stats
    assert (stats.malformed, stats.bad_args, stats.posted, stats.errors) == (len(malformed), len(bad_args), 1, 0)
    assert rx.running


def test_a_sender_outside_the_allowlist_is_ignored(raw):
    bus = default_bus()
    with Receiver(bus, host="127.0.0.1", port=0, allow=("10.0.0.0/8", "::1/128")) as rx:
        for _ in range(3):
            raw.sendto(message("/masq/walk/energy", 0.5), ("127.0.0.1", rx.port))
        until(lambda: rx.stats.disallowed == 3, what="three refusals")
        assert rx.stats.posted == 0
        assert bus.snapshot(0.0).targets["walk.energy"] == 0.0 and bus.stats.applied == 0


def test_a_bad_allowlist_entry_is_named():
    with pytest.raises(ControlError, match="allow.*lan"):
        Receiver(Bus(), allow=("lan",))


def test_a_flood_is_dropped_and_counted_and_does_not_delay_the_snapshot(raw):
    bus = default_bus()
    with Receiver(bus, host="127.0.0.1", port=0, max_per_second=50) as rx:
        dgram, sent = message("/masq/walk/energy", 0.5), 3000
        start = time.monotonic()

        def flood():
            for _ in range(sent):
                raw.sendto(dgram, ("127.0.0.1", rx.port))

        sender = threading.Thread(target=flood)
        sender.start()
        slowest, frames = 0.0, 0
        while sender.is_alive() or frames < 10:
            t0 = time.perf_counter()
            bus.snapshot(frames / 60)
            slowest = max(slowest, time.perf_counter() - t0)
            frames += 1
            time.sleep(0.001)
        sender.join()
        settle(lambda: rx.stats.packets)  # the receiver has read what the kernel kept of the flood
        elapsed = time.monotonic() - start
        stats = rx.stats
        bus.snapshot(frames / 60)
    assert stats.rate_limited > 0 and stats.posted + stats.rate_limited == stats.packets, stats
    assert stats.posted <= 50 + 50 * elapsed + 1, (stats, elapsed)  # a burst of 50, then 50 per second
    assert bus.stats.applied + bus.stats.coalesced == stats.posted  # a frame applies a source's newest value
    assert slowest < 0.05, f"a snapshot took {slowest * 1000:.1f} ms during the flood"


def read_feedback(sock, want, timeout=3.0):
    """Read OSC messages from `sock` until `want(address, value)` holds; return everything read."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data, _ = sock.recvfrom(65536)
        except TimeoutError:
            continue
        msg = OscMessage(data)
        seen.append((msg.address, msg.params[0]))
        if want(*seen[-1]):
            return seen
    raise AssertionError(f"no such feedback; saw {seen}")


@pytest.fixture
def listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    yield sock
    sock.close()


def test_feedback_follows_changes_made_elsewhere_but_does_not_echo_the_fader(listener):
    bus = default_bus(Binding("midi:cc/1/7", "walk.energy", input=(0, 127)))
    feedback = ("127.0.0.1", listener.getsockname()[1])
    with Receiver(bus, host="127.0.0.1", port=0, feedback=feedback, feedback_per_second=50) as rx:
        bus.snapshot(0.0)  # the first snapshot: controllers learn every fader's position
        seen = read_feedback(listener, lambda a, v: a == "/masq/walk/speed" and v == pytest.approx(0.5))
        bus.post("midi:cc/1/7", 127 / 4)
        bus.snapshot(0.1)
        seen += read_feedback(listener, lambda a, v: a == "/masq/walk/energy" and v == pytest.approx(0.25))

        SimpleUDPClient("127.0.0.1", rx.port).send_message("/masq/walk/truncation", 0.5)
        until(lambda: bus.snapshot(0.2).held_by["walk.truncation"], what="the fader")
        bus.post("midi:cc/1/7", 127)
        bus.snapshot(0.3)
        seen += read_feedback(listener, lambda a, v: a == "/masq/walk/energy" and v == pytest.approx(1.0))
    assert ("/masq/walk/truncation", 0.5) not in seen  # the fader that set it is not told
    assert not any(a in ("/masq/keyframe/next", "/masq/bookmark/save") for a, _ in seen)  # triggers: no feedback
    assert rx.stats.feedback_sent >= len(seen)


def test_feedback_is_rate_limited(listener):
    bus = default_bus(Binding("midi:cc/1/7", "walk.energy", input=(0, 127)))
    feedback = ("127.0.0.1", listener.getsockname()[1])
    with Receiver(bus, host="127.0.0.1", port=0, feedback=feedback, feedback_per_second=10) as rx:
        start, i = time.monotonic(), 0
        while time.monotonic() - start < 0.5:
            bus.post("midi:cc/1/7", i % 128)
            bus.snapshot(i / 60)
            i += 1
            time.sleep(0.005)
        sent = rx.stats.feedback_sent
    energy = []
    while True:
        try:
            data, _ = listener.recvfrom(65536)
        except TimeoutError:
            break
        energy += [1 for m in [OscMessage(data)] if m.address == "/masq/walk/energy"]
    assert 2 <= len(energy) <= 0.5 * 10 + 2, (len(energy), i)
    assert sent >= len(energy)


def test_a_port_in_use_is_named():
    with Receiver(Bus(), host="127.0.0.1", port=0) as first:
        with pytest.raises(ControlError, match=f"127.0.0.1:{first.port}"):
            Receiver(Bus(), host="127.0.0.1", port=first.port).start()


def test_the_shipped_address_space_matches_the_code_and_the_docs():
    shipped = ROOT / "assets" / "controllers" / "masquerade-osc.json"
    assert json.loads(shipped.read_text()) == json.loads(addresses.address_space_json()), \
        "regenerate it: python -m engine.controls.addresses > assets/controllers/masquerade-osc.json"
    doc = (ROOT / "docs" / "osc.md").read_text()
    for row in addresses.address_space()["addresses"]:
        assert f"`{row['address']}`" in doc, f"docs/osc.md does not describe {row['address']}"


def test_default_bindings_cover_every_address_and_filter_params():
    from engine.controls.bus import Param

    params = [*addresses.default_params(), Param("filter.bloom.amount", 0.0, 0.0, 2.0)]
    bus = declare_all(Bus(), params, addresses.default_bindings(params))
    sources = {b.source for b in bus.bindings}
    assert {f"osc:{a.address}" for a in addresses.ADDRESSES} | {"osc:/masq/filter/bloom/amount"} == sources
    bus.post("osc:/masq/filter/bloom/amount", 0.5)
    assert bus.snapshot(0.0)["filter.bloom.amount"] == 1.0


def test_feedback_addresses_parse_and_bad_ones_are_named():
    assert parse_address("192.168.1.20:9001") == ("192.168.1.20", 9001)
    assert parse_address("[::1]:9001") == ("::1", 9001)
    for bad in ("192.168.1.20", ":9001", "tablet:port", "tablet:70000"):
        with pytest.raises(ControlError, match=r"\[osc\] feedback must be"):
            parse_address(bad)


def until(predicate, timeout=3.0, what="condition"):
    return _until(predicate, timeout, what)
