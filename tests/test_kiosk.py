"""The kiosk supervisor (installation/kiosk/): real supervisor processes, real child processes, real
signals. Most tests use a small fake engine (FAKE_ENGINE below: the engine's command line and heartbeat
format, no model) so faults are quick to inject; one test runs the real engine under Xvfb."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_SHOW, ROOT, until, x_server

FAKE_ENGINE = '''
import json, os, sys, time
from pathlib import Path
args = sys.argv[1:]
assert args[0] == "run", args
show, heartbeat = Path(args[1]), Path(args[args.index("--heartbeat") + 1])
behaviours = json.loads(Path(os.environ["FAKE_BEHAVIOUR"]).read_text()) if os.environ.get("FAKE_BEHAVIOUR") else {}
b = behaviours.get(show.name, {})
print(f"fake engine {os.getpid()} playing {show.name} {args[3:]}", flush=True)
if "exit" in b:
    print("Traceback (most recent call last):\\n  ValueError: fake failure", flush=True)
    sys.exit(b["exit"])
time.sleep(b.get("start_after", 0))  # a slow start: no heartbeat meanwhile
start, frames = time.monotonic(), 0
if b.get("thumbnail"):  # a small JPEG beside the heartbeat, as the engine writes one of what it presents
    from PIL import Image
    Image.new("RGB", (32, 18), (250, 120, 0)).save(heartbeat.with_suffix(".jpg"), format="JPEG")
while True:
    frames += 1
    tmp = heartbeat.with_name(".hb.tmp")
    cue_file = Path(b.get("cue_file", "/nonexistent"))
    cue = int(cue_file.read_text()) if cue_file.is_file() else None  # a scene cue the show has fired
    tmp.write_text(json.dumps({"pid": os.getpid(), "time": time.time(), "frames": frames, "t": frames / 30,
                               "fps": 30.0, "show": show.stem, "stage_ms": {"generate": 1.0}, "cue": cue,
                               **({"thumbnail": heartbeat.with_suffix(".jpg").name} if b.get("thumbnail") else {}),
                               **({"scene": b["scene"]} if "scene" in b else {})}))
    os.replace(tmp, heartbeat)
    if time.monotonic() - start > b.get("crash_after", 1e9):
        raise RuntimeError("fake crash")
    time.sleep(0.1)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


class Kiosk:
    """A site folder in tmp_path and a real `python -m installation.kiosk SITE` process on it."""

    def __init__(self, folder: Path, site: str, behaviour: dict | None = None, fake: bool = True, env=None):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "fake_engine.py").write_text(FAKE_ENGINE)
        (folder / "behaviour.json").write_text(json.dumps(behaviour or {}))
        command = f'command = [{json.dumps(sys.executable)}, {json.dumps(str(folder / "fake_engine.py"))}]\n'
        self.site = folder / "site.toml"
        self.site.write_text(site.replace("[engine]\n", "[engine]\n" + (command if fake else ""), 1))
        self.env = {**os.environ, "FAKE_BEHAVIOUR": str(folder / "behaviour.json"), **(env or {})}
        self.env.pop("MASQUERADE_KIOSK_TOKEN", None) if "MASQUERADE_KIOSK_TOKEN" not in (env or {}) else None
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "installation.kiosk", str(self.site)], cwd=ROOT,
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def state(self) -> dict:
        try:
            return json.loads((self.folder / "state" / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def log(self) -> str:
        return (self.folder / "logs" / "kiosk.log").read_text()

    def playing(self, show: str | None = None, not_pid: int | None = None, timeout: float = 20):
        """Wait until an engine plays (`show`, by file name) with frames, other than `not_pid`; its state."""
        def ok():
            s = self.state()
            child, beat = s.get("child") or {}, s.get("heartbeat") or {}
            pid = child.get("pid")
            return s if (s.get("mode") in ("playing", "safe") and child.get("running") and beat.get("pid") == pid
                         and pid != not_pid and (show is None or Path(child["show"]).name == show)) else None
        return until(ok, timeout, f"an engine playing {show or 'a show'}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        child = (self.state().get("child") or {}).get("pid")
        if child and alive(child):  # never leave an engine behind, whatever failed
            os.killpg(child, signal.SIGKILL)


def show_copy(folder: Path, name: str, title: str = "Emoji masquerade") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(DEFAULT_SHOW.read_text().replace('name = "Emoji masquerade"', f'name = "{title}"'))
    return path


SITE = """
name = "Test site"
[engine]
safe_show = "shows/safe.toml"
[watchdog]
heartbeat_timeout = 1.5
startup_timeout = 20
backoff_initial = 0.3
backoff_max = 2
failures_before_safe = 3
reload_within = 3.0
[status]
enabled = false
[[playlist]]
show = "shows/a.toml"
"""


@pytest.fixture
def site_dir(tmp_path):
    show_copy(tmp_path / "shows", "a.toml")
    show_copy(tmp_path / "shows", "b.toml")
    show_copy(tmp_path / "shows", "safe.toml", "Safe")
    return tmp_path


def test_supervisor_never_imports_torch_or_the_engine():
    code = ("import sys, installation.kiosk.supervisor, installation.kiosk.status, installation.kiosk.__main__\n"
            "heavy = ('torch', 'numpy', 'moderngl', 'pygame', 'engine')\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in heavy]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_kill_9_brings_the_engine_back_and_the_restart_is_recorded(site_dir):
    with Kiosk(site_dir, SITE) as kiosk:
        first = kiosk.playing("a.toml")
        pid = first["child"]["pid"]
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        again = kiosk.playing("a.toml", not_pid=pid)
        assert time.monotonic() - killed < 5
        assert again["restarts"] == 1 and not alive(pid)
        assert any(e["kind"] == "crash" and "SIGKILL" in e["detail"] for e in again["events"])
        assert f"engine pid {pid} killed by SIGKILL" in kiosk.log()


def test_a_hung_engine_is_killed_and_restarted(site_dir):
    with Kiosk(site_dir, SITE) as kiosk:
        pid = kiosk.playing("a.toml")["child"]["pid"]
        os.kill(pid, signal.SIGSTOP)  # alive, but no more frames
        again = kiosk.playing("a.toml", not_pid=pid)
        assert again["restarts"] == 1 and not alive(pid)
        assert any(e["kind"] == "hang" and str(pid) in e["detail"] for e in again["events"])
        assert "hung (no new frame for" in kiosk.log()


def test_repeated_crashes_back_off_then_fall_back_to_the_safe_show(site_dir):
    with Kiosk(site_dir, SITE, behaviour={"a.toml": {"crash_after": 0.3}}) as kiosk:
        state = kiosk.playing("safe.toml", timeout=30)
        assert state["safe_mode"] and state["mode"] == "safe"
        starts = [e["time"] for e in state["events"] if e["kind"] == "start" and e["detail"].endswith("a.toml")]
        assert len(starts) == 3  # the first restart at once, the next after backoff_initial
        assert starts[2] - starts[1] >= 0.3
        crash = state["errors"][-1]
        assert "exited with status 1" in crash["message"] and "RuntimeError: fake crash" in crash["traceback"]
        assert "playing the safe show" in kiosk.log()


def test_a_bad_show_edit_is_refused_and_the_running_show_goes_on(site_dir):
    show = site_dir / "shows" / "a.toml"
    with Kiosk(site_dir, SITE) as kiosk:
        pid = kiosk.playing("a.toml")["child"]["pid"]
        good = show.read_text()
        show.write_text(good.replace("[walk]", "[walk"))  # invalid TOML
        state = until(lambda: (s := kiosk.state()) and any("show edit refused" in e["message"] for e in s["errors"])
                      and s, 20, "the edit refused")
        assert "not valid TOML" in state["errors"][-1]["message"] and "line" in state["errors"][-1]["message"]
        assert state["child"]["pid"] == pid and alive(pid)
        show.write_text(good.replace("speed = 1.0", "speed = 2.0"))  # a valid edit: played at the next cue
        edited = time.monotonic()
        state = until(lambda: (s := kiosk.state()) and any(e["kind"] == "reload-pending" for e in s["events"])
                      and s, 20, "the edit accepted")
        assert state["child"]["pid"] == pid  # no cue came yet: the running show goes on for now ...
        state = kiosk.playing("a.toml", not_pid=pid)
        assert time.monotonic() - edited >= 2.0  # ... until reload_within (3 s) after the edit
        assert any(e["kind"] == "reload" for e in state["events"])
        assert "show edit refused" in kiosk.log()


def test_a_valid_show_edit_takes_over_at_the_next_scene_cue(site_dir):
    show, cue = site_dir / "shows" / "a.toml", site_dir / "cue.txt"
    with Kiosk(site_dir, SITE.replace("reload_within = 3.0", "reload_within = 600"),
               behaviour={"a.toml": {"cue_file": str(cue)}}) as kiosk:
        pid = kiosk.playing("a.toml")["child"]["pid"]
        show.write_text(show.read_text().replace("speed = 1.0", "speed = 2.0"))
        until(lambda: any(e["kind"] == "reload-pending" for e in kiosk.state()["events"]), 20, "the edit accepted")
        time.sleep(1.0)
        assert kiosk.state()["child"]["pid"] == pid  # waiting for a cue
        cue.write_text("2")  # the show fires cue 2: the edit takes over there
        state = kiosk.playing("a.toml", not_pid=pid, timeout=10)
        assert any(e["kind"] == "reload" for e in state["events"])


def test_an_engine_that_refuses_its_show_is_skipped(site_dir):
    site = SITE.replace('show = "shows/a.toml"', 'show = "shows/a.toml"\n[[playlist]]\nshow = "shows/b.toml"')
    with Kiosk(site_dir, site, behaviour={"a.toml": {"exit": 2}}) as kiosk:
        state = kiosk.playing("b.toml")
        assert state["restarts"] == 1 and not state["safe_mode"]
        assert "status 2" in state["errors"][-1]["message"] and "fake failure" in state["errors"][-1]["traceback"]


def test_playlist_advances_and_a_restarted_supervisor_resumes_it_and_talks_to_systemd(site_dir, tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # systemd's end of sd_notify
    notify.bind(str(tmp_path / "notify.sock"))
    messages = []
    listener = threading.Thread(target=lambda: [messages.append(notify.recv(4096).decode()) for _ in iter(
        lambda: "STOPPING=1" not in messages, False)], daemon=True)
    listener.start()
    two = 'show = "shows/a.toml"\nminutes = 0.05\n[[playlist]]\nshow = "shows/b.toml"'
    site = SITE.replace('show = "shows/a.toml"', two)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    kiosk = Kiosk(site_dir, site, env=env)
    with kiosk:
        kiosk.playing("a.toml")
        state = kiosk.playing("b.toml")  # after 3 s
        assert state["playlist_index"] == 1
        supervisor_pid, child = kiosk.proc.pid, state["child"]["pid"]
    assert kiosk.proc.returncode == 0 and not alive(child)
    assert kiosk.state()["mode"] == "stopped"
    listener.join(10)
    assert messages[0].startswith("READY=1") and "WATCHDOG=1" in messages and messages[-1] == "STOPPING=1"
    assert any(m.startswith("STATUS=playing: b.toml") for m in messages)
    assert supervisor_pid  # (the unit's MAINPID)
    with kiosk:  # a new supervisor: the same playlist entry, not the first
        state = kiosk.playing()
        assert Path(state["child"]["show"]).name == "b.toml" and state["playlist_index"] == 1
    notify.close()


def test_site_file_errors_name_the_key(tmp_path):
    site = tmp_path / "site.toml"
    site.write_text('[[playlist]]\nshow = "shows/default.toml"\n[hours]\nmon = "10:00-25:00"\n')
    out = subprocess.run([sys.executable, "-m", "installation.kiosk", str(site)], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 2 and "hours.mon" in out.stderr and "'25:00'" in out.stderr
    site.write_text('[[playlist]]\nshow = "shows/default.toml"\n[watchdog]\nheartbeat_timeout = "soon"\n')
    out = subprocess.run([sys.executable, "-m", "installation.kiosk", str(site)], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 2 and "heartbeat_timeout must be a number" in out.stderr


def test_opening_hours_and_the_playlist_clock():
    from installation.kiosk.schedule import advance, is_open, next_change, parse_hours

    hours = parse_hours({"mon": "10:00-18:00", "fri": "10:00-13:00, 20:00-02:00", "sun": "always"}, "hours")
    monday = datetime(2026, 3, 2)  # a Monday
    assert not is_open(hours, monday.replace(hour=9, minute=59)) and is_open(hours, monday.replace(hour=10))
    assert not is_open(hours, monday.replace(hour=18)) and not is_open(hours, monday.replace(day=3, hour=12))
    friday = monday.replace(day=6)
    assert is_open(hours, friday.replace(hour=23, minute=30)) and is_open(hours, friday.replace(day=7, hour=1))
    assert not is_open(hours, friday.replace(day=7, hour=2)) and is_open(hours, friday.replace(day=8, hour=23))
    assert next_change(hours, monday.replace(hour=17, minute=30)) == monday.replace(hour=18)
    assert is_open(None, monday)
    assert advance([10, 20, None], 0, 100.0, 105.0) == (0, 100.0)
    assert advance([10, 20, None], 0, 100.0, 131.0) == (2, 130.0)
    assert advance([10, 20], 0, 0.0, 65.0) == (0, 60.0)


@pytest.mark.skipif(not Path("/usr/bin/Xvfb").exists(), reason="needs Xvfb (setup.sh)")
def test_the_real_engine_skips_a_missing_model_plays_and_comes_back_after_kill_9(tmp_path, xvfb):
    broken = tmp_path / "broken.toml"  # the engine itself refuses it (status 2): skipped, reported
    text = DEFAULT_SHOW.read_text()
    assert '"assets/models/emoji64-v2.safetensors"' in text
    broken.write_text(text.replace('"assets/models/emoji64-v2.safetensors"', '"assets/models/gone.safetensors"'))
    site = f"""
name = "Real engine"
[engine]
args = ["--size", "320x180"]
safe_show = "{DEFAULT_SHOW}"
[watchdog]
heartbeat_timeout = 10
[status]
enabled = false
[[playlist]]
show = "{broken}"
[[playlist]]
show = "{DEFAULT_SHOW}"
"""
    with Kiosk(tmp_path, site, fake=False) as kiosk:
        state = until(lambda: (s := kiosk.playing(timeout=60))["heartbeat"]["frames"] > 5 and s, 30, "frames")
        beat = state["heartbeat"]
        assert any("gone.safetensors: no such model file" in e["traceback"] for e in state["errors"])
        assert any(e["kind"] == "skipped" and e["detail"].endswith("broken.toml") for e in state["events"])
        assert beat["show"] == "Emoji masquerade" and beat["fps"] > 0 and "generate" in beat["stage_ms"]
        assert beat["cue"] is None  # no scene cue fired: none reported (issue 16), so none resumed
        pid = state["child"]["pid"]
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        state = kiosk.playing(not_pid=pid, timeout=60)
        print(f"real engine back {time.monotonic() - killed:.1f} s after kill -9")
        assert state["restarts"] == 2 and state["playlist_index"] == 1  # the skip, then the kill
        argv = Path(f"/proc/{state['child']['pid']}/cmdline").read_bytes().split(b"\0")
        assert b"--start-at" in argv and b"--cue" not in argv  # resumed where it was, no cue nobody fired
        assert "playing Emoji masquerade" in kiosk.log()  # the engine's own log lines, in the kiosk log


def red_still_on(display: str, still_log: Path):
    """A check that the 200x100 still (pure red) fills its window, wherever the X server placed it."""
    from PIL import ImageGrab

    def red():
        try:
            colours = dict((c, n) for n, c in ImageGrab.grab(xdisplay=display).getcolors(1 << 24))
        except OSError:  # the X server is not taking connections (yet)
            return False
        red.seen = sorted(colours.items(), key=lambda kv: -kv[1])[:3]
        return colours.get((200, 30, 40), 0) >= 0.95 * 200 * 100
    red.seen = []
    red.why = lambda: (f"screen's commonest colours {red.seen}; still.log: "
                       f"{still_log.read_text(errors='replace')[-500:] if still_log.exists() else 'none'}")
    return red


def test_closed_hours_show_the_sites_still_and_no_engine(site_dir):
    from PIL import Image

    Image.new("RGB", (20, 10), (200, 30, 40)).save(site_dir / "closed.png")
    site = SITE.replace("[engine]\n", '[engine]\nclosed = "closed.png"\nargs = ["--size", "200x100"]\n') + \
        '[hours]\nmon = "closed"\n'  # every day closed
    with x_server(f":{500 + os.getpid() % 200}") as display, \
            Kiosk(site_dir, site, env={"DISPLAY": display}) as kiosk:  # its own screen: no other test's windows
        state = until(lambda: (s := kiosk.state()) and s.get("mode") == "closed"
                      and any(e["kind"] == "closed" for e in s["events"]) and s, 20, "the closed screen")
        assert not (state.get("child") or {}).get("running")
        red = red_still_on(display, site_dir / "logs" / "still.log")
        try:
            until(red, 20, "the still on the screen")
        except AssertionError as e:
            raise AssertionError(f"{e}: {red.why()}") from None
    bad = site_dir / "bad.toml"
    bad.write_text(site.replace("closed.png", "missing.png"))
    out = subprocess.run([sys.executable, "-m", "installation.kiosk", str(bad), "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "engine.closed" in out.stderr and "missing.png" in out.stderr


def test_a_still_started_before_the_x_server_is_up_appears_once_it_is(site_dir):
    """SDL quietly falls back to an invisible offscreen window when X cannot be reached (a kiosk booting before
    its X server, an X server slow to take connections on a loaded machine): the still must not sit there
    unseen for the whole closed period. It exits with one line instead, and the supervisor tries again."""
    from PIL import Image

    display = f":{700 + os.getpid() % 200}"
    still_log = site_dir / "logs" / "still.log"
    Image.new("RGB", (20, 10), (200, 30, 40)).save(site_dir / "closed.png")
    site = SITE.replace("[engine]\n", '[engine]\nclosed = "closed.png"\nargs = ["--size", "200x100"]\n') + \
        '[hours]\nmon = "closed"\n'
    with Kiosk(site_dir, site, env={"DISPLAY": display}) as kiosk:
        until(lambda: still_log.exists() and "no usable display" in still_log.read_text(errors="replace"), 30,
              "the still saying it has no display")
        with x_server(display, "640x480x24"):
            red = red_still_on(display, still_log)
            try:
                until(red, 30, "the still on the screen once X is up")
            except AssertionError as e:
                raise AssertionError(f"{e}: {red.why()}") from None
            state = kiosk.state()
            assert state["mode"] == "closed"
            assert sum("closed screen exited" in e["message"] for e in state["errors"]) == 1  # said once
