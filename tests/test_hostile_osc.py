"""A hostile sender on the network, reproduced with real UDP on loopback (issue 15): bundles that dodge the
rate limit, floods that drown the render thread or a controller's cues, far-future bundles that grow a
heap, argument-less and absurd values that slam faders to their ends, counters that never reach the status
page, a network-wide default bind, a spoofable allowlist, and rates that are not numbers.

Every wait is bounded (`until`, socket timeouts); no test asserts a wall-clock duration."""

import math
import re
import socket
import time

import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from engine import show as shows
from engine.controls import addresses, osc
from engine.controls.bus import Bus, ControlError, declare_all
from engine.controls.osc import Receiver
from tests.conftest import ROOT, until

SECRET = "a long shared secret for tests"


def message(address, *args) -> bytes:
    builder = OscMessageBuilder(address)
    for a in args:
        builder.add_arg(*a) if isinstance(a, tuple) else builder.add_arg(a)
    return builder.build().dgram


def bundle(when, dgrams) -> bytes:
    builder = OscBundleBuilder(when)
    for d in dgrams:
        builder.add_content(OscMessage(d))
    return builder.build().dgram


def default_bus() -> Bus:
    return declare_all(Bus(), addresses.default_params(), addresses.default_bindings())


def sender(host="127.0.0.1") -> socket.socket:
    """A UDP socket sending from `host` (any 127.x.y.z address is this machine: another sender)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


@pytest.fixture
def socks():
    made = []
    yield lambda host="127.0.0.1": made.append(sender(host)) or made[-1]
    for s in made:
        s.close()


def handled(rx, packets, what="the packets"):
    """Wait until the receiver has read `packets` datagrams (bounded)."""
    until(lambda: rx.stats.packets >= packets, 5.0, what)


# --- the rate limit charges messages, not datagrams ---

def test_a_bundle_is_charged_per_message_not_per_datagram(socks):
    bus = default_bus()
    with Receiver(bus, host="127.0.0.1", port=0, max_per_second=50) as rx:
        out = socks()
        faders = ["/masq/walk/energy", "/masq/walk/truncation", "/masq/style/mix"]
        for _ in range(6):  # 6 bundles of 40 messages: 240 messages, about 6 times the burst of 50
            dgrams = [message(faders[j % 3], (j % 10) / 10) for j in range(40)]
            out.sendto(bundle(IMMEDIATELY, dgrams), ("127.0.0.1", rx.port))
        handled(rx, 6)
        stats = rx.stats
    assert stats.posted <= 50 + 50 * 1.0, stats  # one burst, plus at most a second's worth
    assert stats.rate_limited >= 240 - stats.posted - 50, stats


def test_a_giant_bundle_never_passes(socks):
    bus = default_bus()
    with Receiver(bus, host="127.0.0.1", port=0) as rx:  # 500 a second: a 1000-message bundle is over it
        big = bundle(IMMEDIATELY, [message(f"/flood/{j}", 0.5) for j in range(1000)])
        assert len(big) > 20_000
        socks().sendto(big, ("127.0.0.1", rx.port))
        handled(rx, 1)
        assert rx.stats.posted == 0 and rx.stats.rate_limited >= 1


def test_many_senders_share_one_total_and_a_quiet_desk_still_gets_through(socks):
    bus = default_bus()
    with Receiver(bus, host="127.0.0.1", port=0, max_per_second=50) as rx:  # all senders: 400 a second
        start = time.monotonic()
        flood = [socks(f"127.0.3.{i + 1}") for i in range(64)]
        for round_ in range(5):  # 64 addresses x 5 bundles x 20 messages, each address within its own 50/s
            for out in flood:
                out.sendto(bundle(IMMEDIATELY, [message("/masq/walk/energy", j / 20) for j in range(20)]),
                           ("127.0.0.1", rx.port))
            handled(rx, 64 * (round_ + 1), "the flood")
        socks("127.0.0.2").sendto(message("/masq/scene/cue", 4), ("127.0.0.1", rx.port))
        handled(rx, 64 * 5 + 1, "the desk's cue")
        elapsed, stats = time.monotonic() - start, rx.stats
        snap = bus.snapshot(0.0)
    # the total's burst and rate, plus each address's quiet lane (1 message at first, then 10 a second)
    assert stats.posted <= 400 + 400 * elapsed + 64 * (1 + 10 * elapsed) + 1, (stats, elapsed)
    assert snap.fired("scene.cue") and snap["scene.cue"] == 4.0


# --- a frame applies at most one value per (source, param), and loses no trigger ---

def test_a_frame_applies_one_value_per_fader_source_however_many_arrived(socks):
    bus = default_bus()
    with Receiver(bus, host="127.0.0.1", port=0, max_per_second=100_000) as rx:
        out = socks()
        sent = 0
        for i in range(20):  # 20 bundles x 50 values for one fader, all before the next frame
            out.sendto(bundle(IMMEDIATELY, [message("/masq/walk/energy", (i * 50 + j) / 1000) for j in range(50)]),
                       ("127.0.0.1", rx.port))
            sent += 50
        out.sendto(message("/masq/walk/energy", 0.75), ("127.0.0.1", rx.port))
        sent += 1
        until(lambda: rx.stats.posted == sent, 5.0, "every message posted")
        before = bus.stats.applied
        snap = bus.snapshot(0.0)
    assert bus.stats.applied - before == 1  # one value for the frame, the newest
    assert snap.targets["walk.energy"] == 0.75
    assert bus.stats.coalesced == sent - 1


def test_coalescing_keeps_a_press_followed_by_its_release_and_other_sources():
    bus = default_bus()
    bus.post("osc:/masq/keyframe/next", 1.0)  # a press ...
    bus.post("osc:/masq/keyframe/next", 0.0)  # ... and its release, in the same frame
    bus.post("osc:/masq/scene/cue", 3.0)
    for v in (0.1, 0.2, 0.3):
        bus.post("osc:/masq/walk/energy", v)
    bus.post("osc:/masq/bookmark/save", 2.0)
    snap = bus.snapshot(0.0)
    assert snap.triggers == {"walk.next_keyframe", "scene.cue", "bookmark.save"}
    assert snap["scene.cue"] == 3.0 and snap["bookmark.save"] == 2.0
    assert snap.targets["walk.energy"] == pytest.approx(0.3)


def test_a_flood_from_one_sender_does_not_cost_another_controller_its_cue(socks):
    bus = default_bus()
    with Receiver(bus, host="127.0.0.1", port=0) as rx:
        flood, desk = socks("127.0.0.1"), socks("127.0.0.2")
        # 256 sources in bundles that fit the datagram rate of the old limit, no frame taken in between
        for i in range(100):  # 12,800 messages, more than the bus used to hold between frames
            dgrams = [message(f"/flood/{(i * 64 + j) % 256}", 0.5) for j in range(64)]
            dgrams += [message("/masq/walk/energy", j / 64) for j in range(64)]
            flood.sendto(bundle(IMMEDIATELY, dgrams), ("127.0.0.1", rx.port))
            if i % 10 == 9:  # paced so that the kernel's buffer keeps every datagram
                handled(rx, i + 1, "the flood")
        desk.sendto(message("/masq/scene/cue", 7), ("127.0.0.1", rx.port))
        handled(rx, 101, "the desk's cue")
        snap = bus.snapshot(0.0)
    assert snap.fired("scene.cue") and snap["scene.cue"] == 7.0, (rx.stats, bus.stats)
    assert bus.stats.overflow == 0


def test_pending_events_stay_bounded_by_the_bound_sources():
    bus = default_bus()
    for i in range(50_000):  # faster than any receiver: unbound sources and fader values
        bus.post(f"osc:/flood/{i % 256}", 0.5)
        bus.post("osc:/masq/walk/energy", (i % 100) / 100)
    assert bus.pending <= len(bus.bindings)
    assert bus.stats.unbound == 50_000 and bus.stats.overflow == 0


# --- scheduled bundles: a capped heap ---

def test_far_future_bundles_cannot_grow_the_schedule_without_bound(socks):
    bus, base = default_bus(), time.time()
    with Receiver(bus, host="127.0.0.1", port=0, max_per_second=100_000, to_show_time=lambda unix: unix - base,
                  max_scheduled=256) as rx:
        out = socks()
        for i in range(40):  # 40 x 25 = 1000 scheduled messages, 30 s ahead (inside max_ahead)
            when = time.time() + 30 + i * 0.01
            out.sendto(bundle(when, [message("/masq/walk/energy", j / 25) for j in range(25)]),
                       ("127.0.0.1", rx.port))
        handled(rx, 40)
        bus.snapshot(0.0)
        stats = rx.stats
    assert bus.waiting <= 256
    assert stats.scheduled <= 256 and stats.schedule_full == 1000 - stats.scheduled, stats


# --- values: nothing slams a fader to its end ---

def test_no_argument_or_an_absurd_number_does_not_move_a_fader(socks):
    bus = default_bus()
    with Receiver(bus, host="127.0.0.1", port=0) as rx:
        out = socks()
        hostile = [message("/masq/walk/energy"),  # no argument: a button press, meaningless for a fader
                   message("/masq/walk/truncation", (2 ** 63 - 1, "h")),
                   message("/masq/walk/speed", (1e300, "d")),
                   message("/masq/style/mix", (-1e9, "f")),
                   message("/masq/walk/energy", (math.inf, "f")),
                   message("/masq/scene/cue", (2 ** 31 - 1, "i"))]
        for d in hostile:
            out.sendto(d, ("127.0.0.1", rx.port))
        out.sendto(message("/masq/keyframe/next"), ("127.0.0.1", rx.port))  # a press: fine for a button
        handled(rx, len(hostile) + 1)
        snap = bus.snapshot(0.0)
        stats = rx.stats
    assert snap.targets["walk.energy"] == 0.0 and snap.targets["walk.truncation"] == 1.0  # defaults
    assert snap.targets["walk.speed"] == 1.0 and snap.targets["style.mix"] == 0.0
    assert snap.triggers == {"walk.next_keyframe"}
    assert stats.posted == 1 and stats.bad_args + stats.out_of_range == len(hostile), stats


# --- every counter reaches the heartbeat and the status page ---

def documented_counters() -> list[str]:
    doc = (ROOT / "docs" / "osc.md").read_text()
    section = doc.split("<!-- counters -->")[1].split("<!-- /counters -->")[0]
    return re.findall(r"^\| `(\w+)` \|", section, flags=re.M)


def test_every_documented_counter_is_in_the_heartbeat_and_on_the_status_page():
    from engine.loop import live_state

    page = pytest.importorskip("installation.kiosk.status").PAGE
    counters = documented_counters()
    for name in ("too_far_ahead", "scheduled", "overflow", "unbound", "rejected", "errors", "schedule_full",
                 "coalesced", "out_of_range", "unauthenticated", "replayed"):
        assert name in counters, f"docs/osc.md does not list {name}"
    bus = default_bus()
    with Receiver(bus, host="127.0.0.1", port=0) as rx:
        state = live_state([], rx, bus, None)
    reported = {**state["osc"], **state["bus"]}
    for name in counters:
        assert isinstance(reported.get(name), int), f"{name} is not in the heartbeat"
        assert re.search(rf"\b{name}\b", page), f"the status page does not show {name}"


# --- who may send: loopback by default, a shared secret for the network ---

def test_the_default_is_this_machine_only(tmp_path):
    rx = Receiver(Bus())
    assert rx.host == "127.0.0.1" and not rx.is_allowed("192.168.1.20") and rx.is_allowed("127.0.0.1")
    show = shows.load(ROOT / "shows" / "default.toml")
    assert show.osc.host == "127.0.0.1"
    assert all(n in ("127.0.0.0/8", "::1/128") for n in show.osc.allow)


def test_with_a_secret_only_signed_fresh_messages_from_the_network_pass(socks):
    bus = default_bus()
    # trusted=(): loopback stands in for the network here (by default this machine needs no signature)
    with Receiver(bus, host="127.0.0.1", port=0, secret=SECRET, trusted=()) as rx:
        out, port = socks(), rx.port
        out.sendto(message("/masq/walk/energy", 0.9), ("127.0.0.1", port))  # spoofed source, no signature
        signed = osc.sign("/masq/walk/energy", [0.25], SECRET)
        out.sendto(signed, ("127.0.0.1", port))
        handled(rx, 2)
        assert bus.snapshot(0.0).targets["walk.energy"] == 0.25
        out.sendto(signed, ("127.0.0.1", port))  # replayed
        tampered = bytearray(osc.sign("/masq/walk/energy", [0.5], SECRET))
        tampered[tampered.index(b",fhb") + 8] ^= 1  # one bit of the value
        out.sendto(bytes(tampered), ("127.0.0.1", port))
        out.sendto(osc.sign("/masq/walk/energy", [0.5], "the wrong secret......."), ("127.0.0.1", port))
        stale = osc.sign("/masq/walk/energy", [0.5], SECRET, counter=int((time.time() - 600) * 1e6))
        out.sendto(stale, ("127.0.0.1", port))
        out.sendto(osc.sign("/masq/keyframe/next", [], SECRET), ("127.0.0.1", port))
        handled(rx, 7)
        snap = bus.snapshot(0.1)
        stats = rx.stats
    assert snap.targets["walk.energy"] == 0.25 and snap.triggers == {"walk.next_keyframe"}
    assert (stats.posted, stats.unauthenticated, stats.replayed) == (2, 3, 2), stats


def test_a_secret_shorter_than_16_characters_is_refused():
    with pytest.raises(ControlError, match="secret"):
        Receiver(Bus(), secret="short")


# --- a rate that is not a number stops the show at load ---

@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_rate_that_is_not_a_finite_number_is_refused_at_load(tmp_path, value):
    path = tmp_path / "show.toml"
    path.write_text((ROOT / "shows" / "default.toml").read_text().replace(
        "assets/models/", str(ROOT / "assets" / "models") + "/") + f"\n[osc]\nmax_per_second = {value}\n")
    with pytest.raises(shows.ShowError, match=rf"{re.escape(str(path))}.*osc\.max_per_second"):
        shows.load(path)
    with pytest.raises(ControlError, match="max_per_second"):
        Receiver(Bus(), max_per_second=float(value))
