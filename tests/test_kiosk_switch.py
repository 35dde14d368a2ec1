"""Issue 16 (4, 5) with the real supervisor and the real engine in a window under Xvfb: a playlist step is a
cross-fade inside the running engine (the same pid, the frame counter rising through it, frames presented
while it runs), a switch to a broken show leaves the old one playing and is reported, a valid edit is
reloaded the same way, restarts count crashes
and hangs only, and the status page reports switches, the scene, and the last switch's length and gap."""

import json
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_MODEL, DEFAULT_SHOW, until
from tests.test_kiosk import Kiosk, free_port
from tests.test_kiosk_status import TOKEN, request

pytest.importorskip("fastapi", reason="the status page needs the kiosk extra: pip install -e '.[kiosk]'")

# Longest gap between two presented frames we accept while a switch runs, on this shared, loaded CPU machine
# (torch and Mesa's software GL on the same cores as the other tests): the point is "no black wall", which a
# restart is for 3-7 s; 2 s is far below that and above the scheduling stalls seen here. bench/kiosk.py
# --switches measures the real figure against the goal of 2 display frames.
GAP_BOUND_MS = 2000


def shows(folder: Path) -> tuple[Path, Path, Path]:
    base = DEFAULT_SHOW.read_text().replace('"assets/models/emoji64-v2.safetensors"', json.dumps(str(DEFAULT_MODEL)))
    folder.mkdir(parents=True, exist_ok=True)
    a, b, broken = folder / "a.toml", folder / "b.toml", folder / "broken.toml"
    a.write_text(base.replace('name = "Emoji masquerade"', 'name = "Show A"'))
    # b: another walk, no super-resolution (another work size: 64 px, not 256), and scenes
    b_text = base.replace('name = "Emoji masquerade"', 'name = "Show B"').replace("seed = 2026", "seed = 7")
    b_text = b_text.replace('[[filters]]\nkind = "superres"', '[[filters]]\nkind = "grade"\nname = "soft"', 1)
    b_text = b_text.replace('path = "assets/models/sr-emoji64-v2-x4.safetensors"', "", 1)  # the SR row's file
    b.write_text(b_text + '\n[[scene]]\nname = "opening"\nduration = "until cued"\n')
    broken.write_text(base.replace('name = "Emoji masquerade"', 'name = "Broken"')
                      .replace(json.dumps(str(DEFAULT_MODEL)), json.dumps(str(folder / "gone.safetensors"))))
    return a, b, broken


@pytest.mark.skipif(not Path("/usr/bin/Xvfb").exists(), reason="needs Xvfb (setup.sh)")
def test_playlist_steps_and_an_edit_switch_inside_the_engine_and_a_broken_show_is_skipped(tmp_path, xvfb):
    a, b, broken = shows(tmp_path / "shows")
    port = free_port()
    site = f"""
name = "Switches"
[engine]
args = ["--size", "320x180"]
safe_show = "{DEFAULT_SHOW}"
transition = 1.0
[watchdog]
heartbeat_timeout = 20
startup_timeout = 120
reload_within = 0
[status]
host = "127.0.0.1"
port = {port}
[[playlist]]
show = "{a}"
[[playlist]]
show = "{b}"
[[playlist]]
show = "{broken}"
"""
    with Kiosk(tmp_path, site, fake=False, env={"MASQUERADE_KIOSK_TOKEN": TOKEN}) as kiosk:
        state = until(lambda: (s := kiosk.playing("a.toml", timeout=120))["heartbeat"]["frames"] > 5 and s, 60,
                      "frames of a")
        pid, frames = state["child"]["pid"], [state["heartbeat"]["frames"]]

        def settled(count, show, timeout=120):
            def ok():
                s = kiosk.state()
                beat = s.get("heartbeat") or {}
                if beat.get("pid") == pid and beat.get("frames"):
                    frames.append(beat["frames"])
                return s if s.get("switches") == count and not s.get("switching") and s.get("child") and \
                    Path(s["child"]["show"]).name == show and (s.get("heartbeat") or {}).get("source") == \
                    s["child"]["show"] else None
            return until(ok, timeout, f"switch {count} to {show}")

        assert request(port, "POST", "/api/next", TOKEN)[0] == 202  # a -> b: a cross-fade in the same engine
        state = settled(1, "b.toml")
        last = state["last_switch"]
        print(f"switch a -> b: {last}")
        assert state["child"]["pid"] == pid and state["restarts"] == 0
        assert last["state"] == "done" and last["frames"] > 0 and last["longest_gap_ms"] < GAP_BOUND_MS
        assert state["heartbeat"]["scene"] == {"number": 1, "name": "opening"}
        assert state["heartbeat"]["show"] == "Show B"

        assert request(port, "POST", "/api/next", TOKEN)[0] == 202  # b -> broken: refused, b plays on, then a
        state = settled(2, "a.toml")
        print(f"switch b -> a (after the broken show was refused): {state['last_switch']}")
        assert state["child"]["pid"] == pid and state["restarts"] == 0 and state["heartbeat"]["show"] == "Show A"
        assert any("gone.safetensors" in e["message"] and "broken.toml" in e["message"] for e in state["errors"])
        assert any(e["kind"] == "skipped" and e["detail"].endswith("broken.toml") for e in state["events"])
        assert any(e["kind"] == "switch-failed" for e in state["events"])
        assert state["last_switch"]["frames"] > 0 and state["last_switch"]["longest_gap_ms"] < GAP_BOUND_MS
        after = until(lambda: (s := kiosk.state())["heartbeat"]["frames"] > frames[-1] + 5 and s, 30, "more frames")
        assert after["child"]["pid"] == pid
        frames.append(after["heartbeat"]["frames"])
        assert frames == sorted(frames) and frames[-1] > frames[0]  # one engine, one frame counter, never reset

        a.write_text(a.read_text().replace("speed = 1.0", "speed = 2.0"))  # a valid edit: reloaded in the engine
        state = settled(3, "a.toml")
        assert state["child"]["pid"] == pid and state["restarts"] == 0 and state["last_switch"]["state"] == "done"
        assert any(e["kind"] == "reload" for e in state["events"])

        page = request(port, "GET", "/api/status")[1]
        assert page["switches"] == 3 and page["restarts"] == 0 and page["last_switch"]["longest_gap_ms"] is not None
        status, html = request(port, "GET", "/")
        assert status == 200 and 'id="switches"' in html and 'id="scene"' in html


def still_video(path: Path, seconds: float = 1.0, fps: int = 30) -> None:
    """A camera on an empty room: the same dark frame over and over (no motion, nobody there)."""
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    for _ in range(round(seconds * fps)):
        writer.write(np.full((120, 160, 3), 20, np.uint8))
    writer.release()


@pytest.mark.skipif(not Path("/usr/bin/Xvfb").exists(), reason="needs Xvfb (setup.sh)")
def test_attract_mode_on_and_off_are_switches_inside_the_engine(tmp_path, xvfb):
    """The camera (a video file through the camera's own code path) sees nobody: the attract show cross-fades
    in inside the running engine; a visitor walks up (a recording with motion takes the file's place): the
    playlist show comes back the same way. One engine throughout, no restart."""
    from tests.test_kiosk_engine import camera_video

    a, _, _ = shows(tmp_path / "shows")
    camera = tmp_path / "camera.avi"
    still_video(camera)
    a_port, attract_port = free_port(), free_port()
    a.write_text(a.read_text() + f'\n[camera]\nsource = "{camera}"\nloop = true\n[osc]\nport = {a_port}\n')
    attract = tmp_path / "shows" / "attract.toml"  # its own OSC port: the switch reopens the inputs for it
    attract.write_text(a.read_text().replace('name = "Show A"', 'name = "Attract"').replace("seed = 2026", "seed = 3")
                       .replace(f"port = {a_port}", f"port = {attract_port}"))
    site = f"""
name = "Attract"
[engine]
args = ["--size", "320x180"]
safe_show = "{DEFAULT_SHOW}"
transition = 0.5
[watchdog]
heartbeat_timeout = 20
startup_timeout = 120
[status]
enabled = false
[attract]
show = "{attract}"
after = 1.0
[[playlist]]
show = "{a}"
"""
    with Kiosk(tmp_path, site, fake=False) as kiosk:
        state = kiosk.playing("a.toml", timeout=120)
        pid = state["child"]["pid"]

        def playing(name, switches):
            def ok():
                s = kiosk.state()
                beat = s.get("heartbeat") or {}
                return s if s.get("switches") == switches and not s.get("switching") and beat.get("pid") == pid \
                    and beat.get("show") == name else None
            try:
                return until(ok, 120, f"{name} playing after switch {switches}")
            except AssertionError as e:
                s = kiosk.state()
                beat = s.get("heartbeat") or {}
                raise AssertionError(f"{e}: switches {s.get('switches')}, attract {s.get('attract')}, presence "
                                     f"{beat.get('presence')}, camera {(beat.get('devices') or {}).get('camera')}, "
                                     f"show {beat.get('show')}, events {s.get('events', [])[-4:]}") from None

        assert state["heartbeat"]["osc"]["port"] == a_port
        state = playing("Attract", 1)  # nobody for a second: the attract show, in the same engine
        assert state["attract"]["playing"] and state["restarts"] == 0
        beat = until(lambda: (b := kiosk.state()["heartbeat"])["osc"]["port"] == attract_port and
                     b["devices"]["camera"]["state"] == "connected" and b, 30, "the attract show's own OSC port")
        assert beat["pid"] == pid  # reopened in the same engine, the camera with them
        assert any(e["kind"] == "attract" for e in state["events"])
        moving = tmp_path / "moving.avi"
        camera_video(moving)
        moving.replace(camera)  # someone walks up: a new recording at the camera's path
        state = playing("Show A", 2)
        assert not state["attract"]["playing"] and state["restarts"] == 0 and state["child"]["pid"] == pid
        assert any(e["kind"] == "attract-off" for e in state["events"])
        until(lambda: kiosk.state()["heartbeat"]["osc"]["port"] == a_port, 30, "show A's OSC port again")
        assert state["last_switch"]["state"] == "done" and state["last_switch"]["longest_gap_ms"] < GAP_BOUND_MS
