"""Issue 15, the kiosk and its web pages against a hostile tester: a hot edit whose model is corrupt, big
request bodies, half-open connections, farmed cookies and numbers that do not fit a float. Real supervisor
processes (tests.test_kiosk's Kiosk, tests.test_kiosk_visitors' Fake), real HTTP over loopback (raw
sockets where the request itself is the attack), bounded loops and socket timeouts throughout; memory is
the supervisor's own VmRSS from /proc."""

import json
import os
import selectors
import socket
import struct
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_MODEL, until
from tests.test_kiosk import SITE, Kiosk, alive, free_port, show_copy
from tests.test_kiosk_status import TOKEN, kiosk, request  # noqa: F401 - `kiosk`: the status page's fixture
from tests.test_kiosk_visitors import SITE as VISITORS_SITE
from tests.test_kiosk_visitors import Fake

pytest.importorskip("fastapi", reason="the kiosk's pages need the kiosk extra: pip install -e '.[kiosk]'")


# -- helpers -----------------------------------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class PeakRSS:
    """The highest VmRSS of `pid` while the block runs, sampled every 5 ms."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.005)

    def __enter__(self):
        self.before = rss_mb(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        time.sleep(0.3)  # a parse still under way shows up too
        self._stop.set()
        self._thread.join(5)


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def status_of(sock: socket.socket) -> int | None:
    """The status code of the answer on `sock` (None: closed or reset without one, or no answer in time)."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:  # a reset (the server closed with our body unread), or the socket's timeout
        pass
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else None


def big_post(port: int, path: str, body: bytes, headers: str = "", chunked: bool = False) -> int | None:
    """POST `body` on a raw socket, as fast as the server takes it; the status of the answer."""
    s = connect(port, timeout=30)
    try:
        length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: kiosk\r\nContent-Type: application/json\r\n{length}\r\n"
                  f"{headers}\r\n".encode())
        try:
            if chunked:
                for i in range(0, len(body), 1 << 20):
                    piece = body[i:i + (1 << 20)]
                    s.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                s.sendall(b"0\r\n\r\n")
            else:
                s.sendall(body)
        except OSError:  # the server answered and closed before taking it all: what a cap does
            pass
        return status_of(s)
    finally:
        s.close()


def twenty_five_mb() -> bytes:
    """A 25 MB JSON object that parses into ~100 MB of Python objects."""
    n = 25_000_000 // 2
    return b'{"show": "b.toml", "pad": [' + b"0," * (n - 1) + b"0]}"


def crowd_site(port: int, **keys) -> str:
    rows = {"enabled": "true", "host": '"127.0.0.1"', "port": port, "window": 30, "votes_per_second": 2,
            "send_per_second": 20, **keys}
    crowd = "\n".join(f"{k} = {v}" for k, v in rows.items())
    return VISITORS_SITE.replace("[status]\nenabled = false", f"[status]\nenabled = false\n[crowd]\n{crowd}")


def phone(port: int, source: str) -> HTTPConnection:
    return HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))


def get_cookie(conn: HTTPConnection, cookie: str | None = None) -> str | None:
    """The page's new cookie for this phone (None: it gave none)."""
    conn.request("GET", "/", headers={"Cookie": cookie} if cookie else {})
    r = conn.getresponse()
    r.read()
    assert r.status == 200
    cookie = r.getheader("Set-Cookie")
    return cookie.split(";")[0] if cookie else None


def vote(conn: HTTPConnection, cookie: str | None, body) -> tuple[int, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", "/api/vote", body=data, headers={"Content-Type": "application/json",
                                                          **({"Cookie": cookie} if cookie else {})})
    r = conn.getresponse()
    return r.status, r.read().decode()


def crowd_mean(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/crowd", timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture
def crowd_dir(tmp_path):
    show_copy(tmp_path / "shows", "a.toml")
    return tmp_path


# -- a hot edit whose model is corrupt -----------------------------------------------------------------------

def safetensors_parts(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def write_safetensors(path: Path, header: dict, data: bytes) -> Path:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def corrupt_models(folder: Path) -> dict[str, Path]:
    """Model files that exist and whose header reads, but that cannot play."""
    header, data = safetensors_parts(DEFAULT_MODEL)
    weight = next(k for k, v in header.items() if k != "__metadata__" and len(v.get("shape", [])) == 4)
    models = {"garbage": folder / "garbage.safetensors"}
    models["garbage"].write_bytes(os.urandom(4096))
    swapped = json.loads(json.dumps(header))  # same bytes, two dimensions swapped: load_state_dict refuses it
    shape = swapped[weight]["shape"]
    shape[0], shape[1] = shape[1], shape[0]
    models["shapes"] = write_safetensors(folder / "shapes.safetensors", swapped, data)
    start, end = header[weight]["data_offsets"]  # every weight of one layer NaN: the frame is NaN
    models["nan"] = write_safetensors(folder / "nan.safetensors", header,
                                      data[:start] + b"\xff" * (end - start) + data[end:])
    huge = json.loads(json.dumps(header))  # a config that builds a 3 GB model before any weight is read
    config = json.loads(huge["__metadata__"]["masquerade.config"])
    config.update(base_channels=4096, max_channels=4096)
    huge["__metadata__"]["masquerade.config"] = json.dumps(config)
    models["huge"] = write_safetensors(folder / "huge.safetensors", huge, data)
    return models


def test_a_show_edit_whose_model_is_corrupt_is_refused_and_the_show_goes_on(site_dir):
    """Each edit parses and names a model file that exists; each model is corrupt in its own way. The
    validator builds the model and its filters on the CPU and draws one frame, in a child process with an
    address-space limit (1500 MB here), so none of them replaces the running show."""
    models = corrupt_models(site_dir)
    show = site_dir / "shows" / "a.toml"
    good = show.read_text()
    assert 'path = "assets/models/emoji64-v2.safetensors"' in good
    site = SITE.replace("reload_within = 3.0", "reload_within = 0\nvalidate_memory_mb = 1500")
    with Kiosk(site_dir, site) as k:
        pid = k.playing("a.toml")["child"]["pid"]
        for n, (name, model) in enumerate(models.items(), start=1):
            show.write_text(good.replace('path = "assets/models/emoji64-v2.safetensors"', f'path = "{model}"'))
            state = until(lambda n=n: (s := k.state()) and sum("show edit refused" in e["message"]
                                                               for e in s["errors"]) >= n and s, 60, name)
            why = state["errors"][-1]["message"]
            print(f"{name}: {why}")
            assert model.name in why or name == "nan", why
            assert "\n" not in why and len(why) < 600
            assert {"garbage": "safetensors", "shapes": "size mismatch", "nan": "not finite",
                    "huge": "1500 MB"}[name] in why
            assert not any(e["kind"] == "reload-pending" for e in state["events"])
            assert state["child"]["pid"] == pid and alive(pid)
        show.write_text(good.replace("speed = 1.0", "speed = 2.0"))  # a good edit still plays (at once here)
        state = k.playing("a.toml", not_pid=pid, timeout=60)
        assert any(e["kind"] == "reload" for e in state["events"])


@pytest.fixture
def site_dir(tmp_path):
    for name in ("a.toml", "safe.toml"):
        show_copy(tmp_path / "shows", name)
    return tmp_path


# -- the status page: bodies, tokens, half-open connections --------------------------------------------------

def test_the_token_is_checked_before_a_body_is_read(kiosk):  # noqa: F811 - the imported fixture
    """Headers that promise 25 MB and no token: 401 at once, before a byte of the body is sent."""
    s = connect(kiosk.port, timeout=5)
    try:
        s.sendall(f"POST /api/cue HTTP/1.1\r\nHost: kiosk\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {25_000_000}\r\n\r\n".encode())
        assert status_of(s) == 401
    finally:
        s.close()
    s = connect(kiosk.port, timeout=5)  # with the token: too big, refused on its Content-Length
    try:
        s.sendall(f"POST /api/cue HTTP/1.1\r\nHost: kiosk\r\nAuthorization: Bearer {TOKEN}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {25_000_000}\r\n\r\n".encode())
        assert status_of(s) == 413
    finally:
        s.close()


def test_big_bodies_do_not_grow_the_supervisor(kiosk):  # noqa: F811
    """4 x 25 MB at once without the token, then 4 x 25 MB with it (2 declared, 2 streamed chunked): the
    supervisor's RSS grows by less than 40 MB, every answer is 401 or 413 (or a reset once refused), and the
    page and the show are still up."""
    port, body = kiosk.port, twenty_five_mb()
    supervisor = kiosk.proc.pid
    pid = kiosk.state()["child"]["pid"]
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    attacks = [("", False)] * 4 + [(auth, False), (auth, False), (auth, True), (auth, True)]
    with PeakRSS(supervisor) as rss, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda a: big_post(port, "/api/cue", body, *a), attacks))
    grew = rss.peak - rss.before
    print(f"supervisor RSS {rss.before:.0f} MB -> peak {rss.peak:.0f} MB under 8 x 25 MB bodies: {answers}")
    assert grew < 40, f"the supervisor grew by {grew:.0f} MB"
    assert set(answers[:4]) <= {401, None} and set(answers[4:]) <= {413, None}
    assert request(port, "GET", "/api/status")[0] == 200
    assert request(port, "POST", "/api/cue", TOKEN, {"show": "b.toml"})[0] == 202  # a real command still works
    assert kiosk.playing("b.toml", not_pid=pid)


def half_open(port: int, sources: list[str]) -> list[socket.socket]:
    """One connection per entry of `sources`, each sending part of its request's headers and nothing more."""
    socks = []
    for source in sources:
        s = connect(port, source, timeout=5)
        s.sendall(b"GET /api/status HTTP/1.1\r\nHost: kiosk\r\nUser-Agent: slow")
        socks.append(s)
    return socks


def closed_by_server(socks: list[socket.socket], timeout: float) -> int:
    """How many of `socks` the server closes within `timeout` seconds."""
    selector, closed, deadline = selectors.DefaultSelector(), 0, time.monotonic() + timeout
    for s in socks:
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ)
    while closed < len(socks) and time.monotonic() < deadline:
        for key, _ in selector.select(0.2):
            try:
                gone = key.fileobj.recv(4096) == b""
            except ConnectionResetError:
                gone = True
            if gone:
                selector.unregister(key.fileobj)
                closed += 1
    selector.close()
    return closed


@pytest.mark.parametrize("sources", [1, 16], ids=["one-address", "sixteen-addresses"])
def test_half_open_connections_do_not_deny_the_page(kiosk, sources):  # noqa: F811
    """64 (then 300) connections that never finish their headers, from one address or from sixteen: the
    page still answers everyone, and the server closes them all within its header timeout."""
    port = kiosk.port
    socks = half_open(port, [f"127.0.0.{2 + i % sources}" for i in range(64)])
    try:
        began = time.monotonic()
        answers = [request(port, "GET", "/api/status")[0] for _ in range(5)]
        print(f"64 half-open from {sources} address(es): {answers} in {time.monotonic() - began:.2f} s")
        assert answers == [200] * 5
        socks += half_open(port, [f"127.0.0.{2 + i % sources}" for i in range(300 - 64)])
        assert request(port, "GET", "/api/status")[0] == 200
        assert request(port, "GET", "/api/status")[0] == 200  # from one of the attackers' addresses too
        closed = closed_by_server(socks, 15)
        print(f"{closed} of {len(socks)} half-open connections closed by the server within 15 s")
        assert closed == len(socks)
    finally:
        for s in socks:
            s.close()


# -- the crowd page: cookies, addresses, numbers -----------------------------------------------------------

def test_one_address_with_twenty_cookies_counts_as_one_phone(crowd_dir):
    port = free_port()
    with Fake(crowd_dir, crowd_site(port)) as k:
        until(lambda: _crowd_up(port), 20, "the crowd page")
        conn = phone(port, "127.0.0.2")
        cookies = [get_cookie(conn) for _ in range(20)]
        assert all(cookies) and len(set(cookies)) == 20
        began = time.monotonic()
        answers = [vote(conn, c, {"x": 1, "y": 1})[0] for c in cookies]
        took = time.monotonic() - began
        assert answers[:16] == [403] * 16  # an address holds 4 tokens per phone it counts as: the rest retired
        assert answers[16] == 202 and set(answers[17:]) <= {202, 429}
        assert answers.count(202) <= 2 + 2 * took  # the address's rate: votes_per_second x phones_per_address
        assert crowd_mean(port)["phones"] == 1  # one address: one phone
        other = phone(port, "127.0.0.3")  # a second phone on another address counts
        assert vote(other, get_cookie(other), {"x": -1, "y": -1})[0] == 202
        mean = crowd_mean(port)
        assert mean["phones"] == 2 and mean["x"] == 0 and mean["y"] == 0
        assert k.proc.poll() is None


def _crowd_up(port: int):
    try:
        return crowd_mean(port)
    except OSError:
        return None


def test_farmed_cookies_do_not_evict_a_real_phone(crowd_dir):
    """A real phone votes; then 5,120 cookies are farmed from 256 addresses (20 each, the per-minute limit):
    the real phone still votes (and counts), and the farm cannot fill the table."""
    port = free_port()
    with Fake(crowd_dir, crowd_site(port, votes_per_second=50)) as k:
        until(lambda: _crowd_up(port), 20, "the crowd page")
        real = phone(port, "127.0.0.1")
        cookie = get_cookie(real)
        assert vote(real, cookie, {"x": 1, "y": 0})[0] == 202

        def farm(i):
            conn = phone(port, f"127.0.{1 + i // 250}.{2 + i % 250}")
            got = [get_cookie(conn) for _ in range(20)]
            conn.close()
            return sum(c is not None for c in got)

        began = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            farmed = sum(pool.map(farm, range(256)))
        print(f"{farmed} cookies farmed in {time.monotonic() - began:.1f} s")
        real.close()  # the page closes a connection idle for 5 s (timeout_keep_alive); a phone connects again
        real = phone(port, "127.0.0.1")  # same address, same cookie: the same phone
        assert vote(real, cookie, {"x": 1, "y": 0})[0] == 202, "the real phone was forgotten"
        assert crowd_mean(port)["phones"] == 1
        assert k.proc.poll() is None


def test_cookies_expire(crowd_dir):
    port = free_port()
    with Fake(crowd_dir, crowd_site(port, forget_after=1.0, votes_per_second=50)) as k:
        until(lambda: _crowd_up(port), 20, "the crowd page")
        conn = phone(port, "127.0.0.2")
        cookie = get_cookie(conn)
        assert get_cookie(conn, cookie) is None  # a known phone keeps its cookie
        for _ in range(3):  # voting keeps it alive past forget_after
            time.sleep(0.5)
            assert vote(conn, cookie, {"x": 0.5, "y": 0.5})[0] == 202
        time.sleep(1.5)  # silent for longer than forget_after: forgotten
        assert vote(conn, cookie, {"x": 0.5, "y": 0.5})[0] == 403
        assert get_cookie(conn, cookie) not in (None, cookie)  # the page gives it a new one
        assert k.proc.poll() is None


NUMBERS = [  # (body, the answer): 400 for a number that does not fit, 422 for what is not a vote, 413 too big
    (b'{"x": ' + b"9" * 400 + b', "y": 0}', 400),  # an int too big for a float: OverflowError
    (b'{"x": 1e400, "y": 0}', 400),  # inf, as Python's json reads it
    (b'{"x": -1e400, "y": 0}', 400),
    (b'{"x": NaN, "y": 0}', 400),
    (b'{"x": Infinity, "y": 0}', 400),
    (b'{"x": 2.5, "y": 0}', 400),  # out of range
    (b'{"x": 0, "y": -7}', 400),
    (b'{"x": "nan", "y": 0}', 422),
    (b'{"x": "1e999", "y": 0}', 422),
    (b'{"x": true, "y": 0}', 422),
    (b'{"x": [0], "y": 0}', 422),
    (b'{"x": 0}', 422),
    (b"[0, 0]", 422),
    (b"7", 422),
    (b"not json", 422),
    (b"[" * 990 + b"]" * 990, 422),  # nested deeper than Python's json can read (RecursionError)
    (b'{"x": 0, "y": 0' + b" " * 5000 + b"}", 413),  # over the crowd page's body cap
]


@pytest.mark.parametrize(("body", "code"), NUMBERS, ids=[b[:20].decode() for b, _ in NUMBERS])
def test_a_bad_vote_is_answered_with_a_reason_never_a_500(crowd_dir, body, code):
    port = free_port()
    with Fake(crowd_dir, crowd_site(port)) as k:
        until(lambda: _crowd_up(port), 20, "the crowd page")
        conn = phone(port, "127.0.0.2")
        cookie = get_cookie(conn)
        status, text = vote(conn, cookie, body)
        print(status, text)
        assert status == code and "\n" not in text and json.loads(text)["detail"]
        assert vote(phone(port, "127.0.0.2"), cookie, {"x": 0.25, "y": -0.25})[0] == 202  # the phone votes on
        assert crowd_mean(port)["phones"] == 1 and k.proc.poll() is None


def test_the_crowd_page_caps_bodies_and_survives_half_open_connections(crowd_dir):
    port = free_port()
    with Fake(crowd_dir, crowd_site(port)) as k:
        until(lambda: _crowd_up(port), 20, "the crowd page")
        with PeakRSS(k.proc.pid) as rss, ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda chunked: big_post(port, "/api/vote", twenty_five_mb(), chunked=chunked),
                                    [False, False, True, True]))
        print(f"crowd: supervisor RSS {rss.before:.0f} -> {rss.peak:.0f} MB, {answers}")
        assert rss.peak - rss.before < 40 and set(answers) <= {413, None}
        socks = half_open(port, [f"127.0.0.{2 + i % 4}" for i in range(300)])
        try:
            assert crowd_mean(port)["phones"] == 0
            conn = phone(port, "127.0.0.9")
            assert vote(conn, get_cookie(conn), {"x": 0, "y": 0})[0] == 202
        finally:
            for s in socks:
                s.close()
