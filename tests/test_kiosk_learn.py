"""The status page's MIDI learn button over real HTTP: with the token, `/masq/learn/start|stop` reaches the engine's
OSC port (a real UDP socket stands in for the engine); without it, 401 and nothing sent."""

import socket
from types import SimpleNamespace

import pytest
from pythonosc.osc_message import OscMessage

from tests.conftest import until
from tests.test_kiosk import free_port
from tests.test_kiosk_status import TOKEN, request

pytest.importorskip("fastapi", reason="the status page needs the kiosk extra: pip install -e '.[kiosk]'")


def test_the_learn_button_sends_learn_start_and_stop_to_the_engine():
    from installation.kiosk import status

    engine = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    engine.bind(("127.0.0.1", 0))
    engine.settimeout(5)
    osc_port = [engine.getsockname()[1]]
    supervisor = SimpleNamespace(site=SimpleNamespace(status=SimpleNamespace(token=TOKEN)),
                                 engine_osc_port=lambda: osc_port[0], snapshot=lambda: {})
    port = free_port()
    server = status.serve(supervisor, "127.0.0.1", port)
    try:
        until(lambda: _up(port), 10, "the page")
        assert request(port, "POST", "/api/learn", body={"on": True})[0] == 401
        assert request(port, "POST", "/api/learn", TOKEN, {"on": True}) == (202, {"accepted": "learn on"})
        assert OscMessage(engine.recvfrom(1024)[0]).address == "/masq/learn/start"  # the 401 sent nothing
        assert request(port, "POST", "/api/learn", TOKEN, {"on": False})[0] == 202
        assert OscMessage(engine.recvfrom(1024)[0]).address == "/masq/learn/stop"
        assert request(port, "POST", "/api/learn", TOKEN, {"on": "yes"})[0] == 422
        osc_port[0] = None
        assert request(port, "POST", "/api/learn", TOKEN, {"on": True})[0] == 409
    finally:
        server.should_exit = True
        engine.close()


def _up(port):
    try:
        return request(port, "GET", "/api/status")[0] == 200
    except OSError:
        return False
