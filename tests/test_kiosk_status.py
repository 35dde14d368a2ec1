"""The kiosk's staff status page over real HTTP on loopback, and in a real headless Chromium (Debian's
`chromium`, driven by Playwright) with real clicks: read-only without the token, 401 and no change for a
control without it, the control applied with it."""

import json
import shutil
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import until
from tests.test_kiosk import SITE, Kiosk, alive, free_port, show_copy

pytest.importorskip("fastapi", reason="the status page needs the kiosk extra: pip install -e '.[kiosk]'")

TOKEN = "correct-horse-battery"
SCENE = {"number": 1, "name": "dawn", "failed": [  # the engine's heartbeat part (engine.switch.scene_of)
    {"number": 2, "name": "noon", "error": "noon.safetensors: not a readable safetensors file"}]}


def request(port: int, method: str, path: str, token: str | None = None, body: dict | None = None):
    """(status, JSON answer or text) of one real HTTP request."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


@pytest.fixture
def kiosk(tmp_path):
    for name in ("a.toml", "b.toml", "safe.toml"):
        show_copy(tmp_path / "shows", name)
    port = free_port()
    site = SITE.replace("enabled = false", f'host = "127.0.0.1"\nport = {port}').replace(
        'show = "shows/a.toml"', 'show = "shows/a.toml"\n[[playlist]]\nshow = "shows/b.toml"')
    with Kiosk(tmp_path, site, env={"MASQUERADE_KIOSK_TOKEN": TOKEN},
               behaviour={"a.toml": {"thumbnail": True, "scene": SCENE}}) as k:
        k.port = port
        k.playing("a.toml")
        until(lambda: request(port, "GET", "/api/status")[0] == 200 if _up(port) else False, 10, "the page")
        yield k


def _up(port):
    try:
        return request(port, "GET", "/api/status")
    except OSError:
        return None


def test_status_is_read_only_without_the_token_and_controls_need_it(kiosk):
    port = kiosk.port
    status, st = request(port, "GET", "/api/status")
    assert status == 200 and st["site"] == "Test site" and st["controls"] is True
    assert st["heartbeat"]["fps"] == 30.0 and Path(st["show"]).name == "a.toml"
    mem, disk = st["memory"], st["disk"]  # the engine's RSS, the system's available memory, the folders' disks
    assert 1 < mem["engine_rss_mb"] < mem["available_mb"] and set(disk) == {"state", "logs"}
    assert all(0 < d["free_mb"] <= d["total_mb"] for d in disk.values())
    status, html = request(port, "GET", "/")
    assert status == 200 and "Masquerade kiosk" in html
    pid = st["child"]["pid"]
    for token in (None, "wrong-token-123"):
        for path in ("/api/restart", "/api/next"):
            assert request(port, "POST", path, token)[0] == 401
        assert request(port, "POST", "/api/cue", token, {"show": "b.toml"})[0] == 401
        assert request(port, "GET", "/api/log", token)[0] == 401
    kiosk.playing("a.toml")  # a turn or two later: nothing changed
    assert kiosk.state()["child"]["pid"] == pid and kiosk.state()["restarts"] == 0
    assert "refused POST /api/restart from 127.0.0.1: no token" in kiosk.log()

    assert request(port, "POST", "/api/restart", TOKEN) == (202, {"accepted": "restart"})
    st = kiosk.playing("a.toml", not_pid=pid)
    assert st["restarts"] == 1 and not alive(pid)
    assert request(port, "POST", "/api/cue", TOKEN, {"show": "b.toml"}) == (202, {"accepted": "cue", "index": 1})
    st = kiosk.playing("b.toml")
    assert st["playlist_index"] == 1
    assert request(port, "POST", "/api/cue", TOKEN, {"show": "/etc/passwd"})[0] == 404
    assert request(port, "POST", "/api/next", TOKEN)[0] == 202
    kiosk.playing("a.toml")
    status, log = request(port, "GET", "/api/log?lines=50", TOKEN)
    assert status == 200 and any("staff command: next" in line for line in log["lines"])


def test_a_flood_of_requests_leaves_the_page_and_the_show_up(kiosk):
    port = kiosk.port
    pid = kiosk.state()["child"]["pid"]

    def hit(i):
        try:
            return request(kiosk.port, "POST" if i % 2 else "GET", "/api/restart" if i % 2 else "/api/status")[0]
        except OSError:
            return "refused"

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(hit, range(400)))
    assert answers.count(401) > 0 and answers.count(200) > 0 and set(answers) <= {200, 401, 503, "refused"}
    assert request(port, "GET", "/api/status")[0] == 200
    assert kiosk.state()["child"]["pid"] == pid and alive(pid)


def test_controls_are_off_when_no_token_is_configured(tmp_path):
    show_copy(tmp_path / "shows", "a.toml")
    show_copy(tmp_path / "shows", "safe.toml")
    port = free_port()
    site = SITE.replace("enabled = false", f'host = "127.0.0.1"\nport = {port}')
    with Kiosk(tmp_path, site) as k:
        k.playing("a.toml")
        until(lambda: _up(port), 10, "the page")
        status, answer = request(port, "POST", "/api/restart", "")
        assert status == 401 and "no token configured" in answer["detail"]
        assert request(port, "GET", "/api/status")[1]["controls"] is False


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_page_in_chromium_a_click_without_and_with_the_token(kiosk):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    pid = kiosk.state()["child"]["pid"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{kiosk.port}/")
            sync_api.expect(page.locator("#mode")).to_have_text("playing", timeout=10_000)
            sync_api.expect(page.locator("#fps")).to_have_text("30.0")
            sync_api.expect(page.locator("#restarts")).to_have_text("0")
            sync_api.expect(page.locator("#stages")).to_have_text("generate 1.0")
            sync_api.expect(page.locator("#showtime")).to_contain_text(" s")
            sync_api.expect(page.locator("#scene")).to_have_text(  # a scene that failed to load, and why
                "1 dawn; scene 2 noon could not load and is skipped: noon.safetensors: not a readable safetensors file")
            page.wait_for_function("document.getElementById('thumb').naturalWidth === 32", timeout=10_000)

            sync_api.expect(page.locator("#memory")).to_contain_text("MB engine")
            sync_api.expect(page.locator("#disk")).to_contain_text("MB free")
            page.click("#restart")  # no token typed
            sync_api.expect(page.locator("#message")).to_contain_text("401")
            sync_api.expect(page.locator("#log")).to_have_text("")  # the log only behind the token
            assert kiosk.state()["child"]["pid"] == pid and kiosk.state()["restarts"] == 0

            page.fill("#token", TOKEN)
            page.click("#restart")
            sync_api.expect(page.locator("#message")).to_have_text("202: accepted restart")
            kiosk.playing("a.toml", not_pid=pid)
            sync_api.expect(page.locator("#restarts")).to_have_text("1", timeout=10_000)
            sync_api.expect(page.locator("#events")).to_contain_text("restart requested")
            sync_api.expect(page.locator("#log")).to_contain_text("staff command: restart", timeout=10_000)
        finally:
            browser.close()
