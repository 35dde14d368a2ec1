"""OSCQuery over real HTTP (the spec's keys, VALUE following the bus, HOST_INFO, refusals) and `[osc] echo` received
by real UDP sockets."""

import json
import socket
import urllib.error
import urllib.request

import pytest
from pythonosc.osc_message import OscMessage

from engine import show as shows
from engine.controls import addresses
from engine.controls.bus import Binding, Bus, declare_all
from engine.controls.learn import COMMANDS
from engine.controls.osc import Receiver
from engine.controls.oscquery import Service
from tests.conftest import DEFAULT_MODEL, until


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read()
            return r.status, json.loads(body) if body else None
    except urllib.error.HTTPError as e:
        return e.code, None


def bus_with(*extra):
    return declare_all(Bus(), addresses.default_params(), [*addresses.default_bindings(), *extra])


@pytest.fixture
def service():
    bus = bus_with()
    with Service(bus, 9000, port=0, name="Masquerade test",
                 commands=[(a, "learn") for a in COMMANDS], mdns=False) as s:
        yield s, f"http://127.0.0.1:{s.port}"


def leaves(node):
    if "CONTENTS" in node:
        for child in node["CONTENTS"].values():
            yield from leaves(child)
    else:
        yield node


def test_the_tree_has_the_spec_keys_for_every_address(service):
    s, url = service
    status, root = get(url + "/")
    assert status == 200 and root["FULL_PATH"] == "/" and "masq" in root["CONTENTS"]
    nodes = {n["FULL_PATH"]: n for n in leaves(root)}
    assert {a.address for a in addresses.ADDRESSES} | set(COMMANDS) <= set(nodes)
    for path, node in nodes.items():
        assert {"FULL_PATH", "TYPE", "ACCESS", "DESCRIPTION", "RANGE"} <= set(node), path
        assert node["ACCESS"] in (2, 3) and isinstance(node["TYPE"], str) and node["DESCRIPTION"]
        assert all({"MIN", "MAX"} <= set(r) for r in node["RANGE"])
        if node["ACCESS"] == 3:
            assert len(node["VALUE"]) == len(node["TYPE"])
    speed = nodes["/masq/walk/speed"]
    assert speed["TYPE"] == "f" and speed["RANGE"] == [{"MIN": 0.0, "MAX": 1.0}]
    assert speed["VALUE"] == [pytest.approx(0.5)]  # 1x: the exp fader's middle
    assert nodes["/masq/keyframe/next"]["ACCESS"] == 2 and "VALUE" not in nodes["/masq/keyframe/next"]
    status, walk = get(url + "/masq/walk")
    assert status == 200 and walk["FULL_PATH"] == "/masq/walk" and set(walk["CONTENTS"]) >= {"speed", "energy"}


def test_value_follows_the_bus(service):
    s, url = service
    assert get(url + "/masq/walk/energy?VALUE") == (200, {"VALUE": [0.0]})
    s.bus.post("osc:/masq/walk/energy", 0.25)
    s.bus.snapshot(0.0)
    assert get(url + "/masq/walk/energy?VALUE") == (200, {"VALUE": [pytest.approx(0.25)]})
    assert get(url + "/masq/walk/energy?TYPE") == (200, {"TYPE": "f"})


def test_host_info_and_refusals(service):
    s, url = service
    status, info = get(url + "/?HOST_INFO")
    assert status == 200 and info["OSC_PORT"] == 9000 and info["OSC_TRANSPORT"] == "UDP"
    assert info["OSC_IP"] == "127.0.0.1" and info["NAME"] == "Masquerade test" and info["EXTENSIONS"]["VALUE"]
    assert get(url + "/masq/nothing")[0] == 404
    assert get(url + "/masq/walk/speed?NONSENSE")[0] == 400
    assert get(url + "/masq/keyframe/next?VALUE")[0] == 204  # write-only: no value
    req = urllib.request.Request(url + "/", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 501


def test_a_client_outside_allow_is_refused():
    with Service(bus_with(), 9000, port=0, allow=["10.0.0.0/8"], mdns=False) as s:
        assert get(f"http://127.0.0.1:{s.port}/")[0] == 403


def test_without_zeroconf_or_multicast_the_service_still_answers():
    with Service(bus_with(), 9000, port=0, mdns=True) as s:  # mDNS: advertised, or one line logged
        assert get(f"http://127.0.0.1:{s.port}/?HOST_INFO")[0] == 200


def test_mdns_advertises_the_http_and_osc_ports_where_zeroconf_is_installed():
    zeroconf = pytest.importorskip("zeroconf")
    with Service(bus_with(), 9123, port=0, name="Masquerade mdns test", mdns=True) as s:
        port = s.port
        until(lambda: s.advertised or s._mdns_thread is None or not s._mdns_thread.is_alive(), timeout=20,
              what="the registration")
        if not s.advertised:
            pytest.skip("no multicast on loopback here (logged by the service)")
        zc = zeroconf.Zeroconf(interfaces=["127.0.0.1"])
        try:
            http = zc.get_service_info("_oscjson._tcp.local.", "Masquerade mdns test._oscjson._tcp.local.", 3000)
            osc = zc.get_service_info("_osc._udp.local.", "Masquerade mdns test._osc._udp.local.", 3000)
        finally:
            zc.close()
    assert http is not None and http.port == port
    assert osc is not None and osc.port == 9123 and "127.0.0.1" in osc.parsed_addresses()


def test_the_show_keys_are_checked():
    base = {"model": {"path": str(DEFAULT_MODEL)}}
    assert shows.parse({**base, "osc": {"query_port": 9001, "echo": True}}).osc.query_port == 9001
    with pytest.raises(shows.ShowError, match=r"<show>: osc.query_port must be -1..65535"):
        shows.parse({**base, "osc": {"query_port": 70000}})
    with pytest.raises(shows.ShowError, match="osc.echo must be true or false"):
        shows.parse({**base, "osc": {"echo": 1}})


def controller():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    return sock


def received(sock, seconds=3.0):
    """Messages received on `sock` within `seconds` (bounded)."""
    import time

    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data, _ = sock.recvfrom(65536)
        except TimeoutError:
            continue
        m = OscMessage(data)
        out.append((m.address, m.params[0]))
    return out


def test_echo_sends_changes_to_every_known_controller_but_not_a_move_back_to_its_mover():
    bus = bus_with(Binding("midi:cc/1/7", "walk.energy"))
    a, b = controller(), controller()
    with Receiver(bus, port=0, echo=True, feedback_per_second=50) as rx:
        a.sendto(_msg("/masq/walk/speed", 0.75), ("127.0.0.1", rx.port))
        b.sendto(_msg("/masq/walk/truncation", 1.0), ("127.0.0.1", rx.port))
        until(lambda: rx.stats.posted == 2, what="both messages")
        bus.snapshot(0.0)
        bus.post("midi:cc/1/7", 0.25)  # moved elsewhere: a MIDI fader
        bus.snapshot(0.1)
        got_a, got_b = received(a, 1.0), received(b, 0.2)
    assert ("/masq/walk/energy", pytest.approx(0.25)) in got_a and ("/masq/walk/energy", pytest.approx(0.25)) in got_b
    assert ("/masq/walk/speed", pytest.approx(0.75)) in got_b  # a's move, shown on b
    assert ("/masq/walk/speed", pytest.approx(0.75)) not in got_a  # never echoed to the hand that moved it
    assert rx.stats.feedback_sent >= 3
    a.close()
    b.close()


def _msg(address, value):
    from pythonosc.osc_message_builder import OscMessageBuilder

    builder = OscMessageBuilder(address)
    builder.add_arg(float(value), "f")
    return builder.build().dgram
