"""Issue 9, the visitors' side of the kiosk: attract mode (camera presence in the heartbeat), crowd steering
from phones (its own port, real HTTP, the mean sent as real OSC over UDP), `masquerade kiosk` as the
command, resuming a show where it was, and a log disk that fills up. A fake engine (the engine's command
line and heartbeat format, no model) stands in, so each case is quick; tests/test_kiosk_engine.py runs
the real engine."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer

from tests.conftest import ROOT, until
from tests.test_kiosk import Kiosk, alive, free_port, show_copy

# the engine's heartbeat, plus what issue 9 added: show time from --start-at, the scene cue from --cue,
# camera presence (read from a file the test writes) and the OSC port (where a test server listens)
FAKE_ENGINE = '''
import json, os, sys, time
from pathlib import Path
args = sys.argv[1:]
show, heartbeat = Path(args[1]), Path(args[args.index("--heartbeat") + 1])
start = float(args[args.index("--start-at") + 1]) if "--start-at" in args else 0.0
cue = int(args[args.index("--cue") + 1]) if "--cue" in args else None
with open(os.environ["FAKE_STARTS"], "a") as f:
    f.write(json.dumps({"pid": os.getpid(), "show": show.name, "args": args[3:]}) + "\\n")
print(f"fake engine {os.getpid()} playing {show.name} from {start}", flush=True)
for i in range(int(os.environ.get("FAKE_CHATTER", 0))):  # lines for the kiosk log
    print(f"chatter {i} " + "x" * 100, flush=True)
began, frames = time.monotonic(), 0
while True:
    frames += 1
    try:
        presence = float(Path(os.environ["FAKE_PRESENCE"]).read_text())
    except (KeyError, OSError, ValueError):
        presence = None
    port = os.environ.get("FAKE_OSC_PORT")
    beat = {"pid": os.getpid(), "time": time.time(), "frames": frames, "t": start + time.monotonic() - began,
            "fps": 20.0, "show": show.stem, "stage_ms": {"generate": 1.0}, "presence": presence, "cue": cue,
            "osc": {"port": int(port)} if port else None, "devices": {}}
    tmp = heartbeat.with_name(".hb.tmp")
    tmp.write_text(json.dumps(beat))
    os.replace(tmp, heartbeat)
    time.sleep(0.05)
'''


class Fake(Kiosk):
    """tests.test_kiosk.Kiosk with the fake engine above; `masquerade kiosk SITE` when `command`."""

    def __init__(self, folder: Path, site: str, env=None, command: bool = False):
        super().__init__(folder, site, env=env)
        (folder / "fake_engine.py").write_text(FAKE_ENGINE)
        self.presence_file, self.starts_file = folder / "presence", folder / "starts.jsonl"
        self.env.update(FAKE_PRESENCE=str(self.presence_file), FAKE_STARTS=str(self.starts_file))
        self.command = command

    def start(self):
        argv = ["-m", "engine.cli", "kiosk"] if self.command else ["-m", "installation.kiosk"]
        self.proc = subprocess.Popen([sys.executable, *argv, str(self.site)], cwd=ROOT, env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def presence(self, value: float) -> None:
        tmp = self.presence_file.with_suffix(".tmp")
        tmp.write_text(str(value))
        os.replace(tmp, self.presence_file)

    def starts(self) -> list[dict]:
        try:
            return [json.loads(line) for line in self.starts_file.read_text().splitlines()]
        except OSError:
            return []


SITE = """
name = "Visitors"
[engine]
[watchdog]
heartbeat_timeout = 2
backoff_initial = 0.3
[status]
enabled = false
[[playlist]]
show = "shows/a.toml"
"""


@pytest.fixture
def site_dir(tmp_path):
    for name in ("a.toml", "b.toml", "attract.toml"):
        show_copy(tmp_path / "shows", name)
    return tmp_path


def test_nobody_there_plays_the_attract_show_and_a_visitor_brings_the_show_back_where_it_was(site_dir):
    site = SITE.replace("[status]", '[attract]\nshow = "shows/attract.toml"\nafter = 1.0\n[status]')
    kiosk = Fake(site_dir, site)
    kiosk.presence(1)
    with kiosk:
        pid = kiosk.playing("a.toml")["child"]["pid"]
        time.sleep(1.5)  # someone is there: no attract, however long
        state = kiosk.playing("a.toml")
        assert state["child"]["pid"] == pid and not state["attract"]["playing"]
        kiosk.presence(0)
        nobody = time.monotonic()
        state = kiosk.playing("attract.toml")
        assert 1.0 <= time.monotonic() - nobody < 5 and state["attract"]["playing"]
        left_at = state["resume"][str(site_dir / "shows" / "a.toml")]["t"]
        assert left_at > 2.0  # a.toml played for more than 2 s of show time
        assert any(e["kind"] == "attract" for e in state["events"])
        kiosk.presence(1)
        state = kiosk.playing("a.toml", not_pid=pid)
        assert not state["attract"]["playing"] and any(e["kind"] == "attract-off" for e in state["events"])
        back = kiosk.starts()[-1]
        assert back["show"] == "a.toml" and "--start-at" in back["args"]
        assert float(back["args"][back["args"].index("--start-at") + 1]) >= left_at - 0.001  # resumes there
    assert "--start-at" not in kiosk.starts()[0]["args"]  # the very first start is at 0


def test_a_restart_resumes_show_time_and_cue_but_a_new_playlist_entry_starts_at_0(site_dir, tmp_path):
    site = SITE.replace('show = "shows/a.toml"', 'show = "shows/a.toml"\n[[playlist]]\nshow = "shows/b.toml"')
    port = free_port()
    site = site.replace("[status]\nenabled = false", f"[status]\nport = {port}\ntoken = \"0123456789\"")
    kiosk = Fake(site_dir, site)
    with kiosk:
        pid = kiosk.playing("a.toml")["child"]["pid"]
        time.sleep(1.0)
        os.kill(pid, signal.SIGKILL)
        state = kiosk.playing("a.toml", not_pid=pid)
        first, again = kiosk.starts()[0], kiosk.starts()[-1]
        assert "--start-at" not in first["args"] and float(again["args"][again["args"].index("--start-at") + 1]) > 1
        assert state["heartbeat"]["t"] > 1.0
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/next", method="POST",
                                         headers={"Authorization": "Bearer 0123456789"})
        assert urllib.request.urlopen(request, timeout=5).status == 202
        kiosk.playing("b.toml")
        assert "--start-at" not in kiosk.starts()[-1]["args"]  # a new entry: from the beginning
    # the supervisor restarted (by systemd, say): the show it played resumes at its show time
    with kiosk:
        kiosk.playing("b.toml")
        last = kiosk.starts()[-1]
        assert last["show"] == "b.toml" and "--start-at" in last["args"]


def osc_listener():
    """A real OSC server on a free UDP port, collecting (address, value) in a list."""
    got: list[tuple[str, float]] = []
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda address, *values: got.append((address, values[0])))
    server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, got


def http(url: str, method: str = "GET", body: dict | None = None, cookie: str | None = None):
    """(status, headers, body text) of one real HTTP request."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if cookie:
        headers["Cookie"] = cookie
    request = urllib.request.Request(url, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def test_crowd_steering_over_http_and_osc_on_its_own_port_started_by_masquerade_kiosk(site_dir):
    server, got = osc_listener()
    crowd, status = free_port(), free_port()
    site = SITE.replace("[status]\nenabled = false", f"""[status]
host = "127.0.0.1"
port = {status}
token = "0123456789"
[crowd]
enabled = true
host = "127.0.0.1"
port = {crowd}
window = 1.5
votes_per_second = 2
phones_per_address = 2
send_per_second = 20""")
    kiosk = Fake(site_dir, site, env={"FAKE_OSC_PORT": str(server.server_address[1])}, command=True)
    try:
        with kiosk:
            kiosk.playing("a.toml")
            maps = Path(f"/proc/{kiosk.proc.pid}/maps").read_text()
            assert "torch" not in maps and "libtorch" not in maps  # `masquerade kiosk` loads no torch
            base = f"http://127.0.0.1:{crowd}"
            assert http(f"{base}/api/vote", "POST", {"x": 1, "y": 1})[0] == 403  # no token: open the page first
            phones = []
            for _ in range(2):
                code, headers, page = http(f"{base}/")
                assert code == 200 and "Drag the yellow dot" in page
                phones.append(headers["Set-Cookie"].split(";")[0])
            assert phones[0] != phones[1]
            assert http(f"{base}/api/vote", "POST", {"x": 1, "y": -1}, phones[0])[0] == 202
            assert http(f"{base}/api/vote", "POST", {"x": -1, "y": -1}, phones[0])[0] == 429  # rate-limited
            assert http(f"{base}/api/vote", "POST", {"x": 0, "y": 1}, phones[1])[0] == 202
            assert http(f"{base}/api/vote", "POST", {"x": "left"}, phones[1])[0] == 422
            mean = json.loads(http(f"{base}/api/crowd")[2])
            assert mean["phones"] == 2 and mean["x"] == 0.5 and mean["y"] == 0.0
            # the mean reaches the engine's OSC port: x 0.5 -> fader 0.75, y 0 -> 0.5
            until(lambda: ("/masq/direction/1", 0.75) in got and ("/masq/direction/2", 0.5) in got, 5, "the OSC")
            # no staff controls on the crowd's port; they are on the status page's, behind the token
            assert http(f"{base}/api/restart", "POST")[0] == 404
            assert http(f"{base}/api/status")[0] == 404
            assert http(f"http://127.0.0.1:{status}/api/restart", "POST")[0] == 401
            # the votes expire: 0.5 (no push) is sent once, then nothing
            until(lambda: got[-2:] == [("/masq/direction/1", 0.5), ("/masq/direction/2", 0.5)], 5, "the release")
            count = len(got)
            time.sleep(0.5)
            assert len(got) == count
    finally:
        server.shutdown()


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_a_full_log_disk_does_not_stop_the_kiosk(site_dir):
    """The log folder is a real 64 KiB tmpfs (mounted in a user namespace of the supervisor's own), filled
    up to the last 8 KiB: the log fills, and the supervisor still restarts a killed engine."""
    logs = site_dir / "logs"
    logs.mkdir()
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no user namespaces here: {probe.stderr.decode().strip()}")
    site = SITE.replace("[status]", "[logs]\nmax_bytes = 10000\nbackups = 2\n[status]")
    site = site.replace("[watchdog]", "[watchdog]\nfailures_before_safe = 100")
    kiosk = Fake(site_dir, site, env={"FAKE_CHATTER": "40"})
    script = (f"mount -t tmpfs -o size=64k tmpfs {logs} && dd if=/dev/zero of={logs}/filler bs=1k count=56 "
              f"2>/dev/null; exec {sys.executable} -m installation.kiosk {kiosk.site}")
    stderr = site_dir / "stderr.txt"  # a file, not a pipe: a pipe nobody reads would block the supervisor
    with open(stderr, "wb") as err:
        kiosk.proc = subprocess.Popen(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, env=kiosk.env,
                                      stdout=subprocess.DEVNULL, stderr=err)
    try:
        pid = kiosk.playing("a.toml")["child"]["pid"]
        for _ in range(4):  # every restart logs the engine's lines, its traceback, events: the disk fills
            os.kill(pid, signal.SIGKILL)
            state = kiosk.playing("a.toml", not_pid=pid)
            pid = state["child"]["pid"]
        assert state["restarts"] == 4 and kiosk.proc.poll() is None
        assert not list(logs.iterdir())  # the tmpfs is the supervisor's alone: not seen from here
    finally:
        kiosk.stop()
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
    assert "No space left on device" in stderr.read_text()  # logging said so (on stderr: the journal) and went on
