"""Issue 9 with the real engine under Xvfb, through the real supervisor: the heartbeat's camera, OSC, cue and
thumbnail on the status page; the camera file renamed away and back; a flood of garbage OSC; and kill -9,
after which the new engine goes on at the show time and scene cue where the old one was."""

import json
import os
import random
import signal
import socket
import time
import urllib.request
from io import BytesIO
from pathlib import Path

import pytest
from pythonosc.udp_client import SimpleUDPClient

from tests.conftest import DEFAULT_SHOW, until
from tests.test_kiosk import Kiosk, free_port


def camera_video(path: Path, seconds: float = 2.0, fps: int = 30) -> None:
    """A short video of a bar sweeping across: the stand-in camera (it moves, so someone is there)."""
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    for i in range(round(seconds * fps)):
        frame = np.zeros((120, 160, 3), np.uint8)
        frame[:, (i * 7) % 140:(i * 7) % 140 + 20] = 255
        writer.write(frame)
    writer.release()


@pytest.mark.skipif(not Path("/usr/bin/Xvfb").exists(), reason="needs Xvfb (setup.sh)")
def test_the_real_engine_reports_survives_camera_loss_and_osc_garbage_and_resumes_after_kill_9(tmp_path, xvfb):
    camera = tmp_path / "camera.avi"
    camera_video(camera)
    show = tmp_path / "show.toml"
    model = DEFAULT_SHOW.parent.parent / "assets" / "models" / "emoji64-v2.safetensors"
    show.write_text(DEFAULT_SHOW.read_text().replace('"assets/models/emoji64-v2.safetensors"', json.dumps(str(model)))
                    + f'\n[camera]\nsource = "{camera}"\nloop = false\n\n[[cue]]\nnumber = 2\nname = "calm"\n'
                      'set = { "walk.truncation" = 0.5 }\n')
    status = free_port()
    site = f"""
name = "Real engine, issue 9"
[engine]
args = ["--size", "320x180", "--osc-port", "0"]
safe_show = "{DEFAULT_SHOW}"
[watchdog]
heartbeat_timeout = 10
[status]
host = "127.0.0.1"
port = {status}
[[playlist]]
show = "{show}"
"""
    with Kiosk(tmp_path, site, fake=False) as kiosk:
        def beat(cond, what, timeout=30):
            return until(lambda: (s := kiosk.state()) and (b := s.get("heartbeat")) and b.get("pid") ==
                         (s.get("child") or {}).get("pid") and cond(b) and b, timeout, what)

        first = beat(lambda b: b["devices"].get("camera", {}).get("state") == "connected" and b["osc"], "a camera",
                     timeout=90)
        pid, port = first["pid"], first["osc"]["port"]
        assert first["presence"] is not None

        # the status page: camera and OSC state in /api/status, the thumbnail as a JPEG
        page = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{status}/api/status", timeout=5).read())
        assert page["heartbeat"]["devices"]["camera"]["state"] == "connected" and page["heartbeat"]["osc"]["port"]
        from PIL import Image

        beat(lambda b: b.get("thumbnail"), "a thumbnail")
        with urllib.request.urlopen(f"http://127.0.0.1:{status}/thumbnail.jpg", timeout=5) as r:
            assert r.headers["Content-Type"] == "image/jpeg"
            image = Image.open(BytesIO(r.read()))
            assert image.format == "JPEG" and image.size == (320, 180)

        # a scene cue over OSC: the heartbeat carries it
        SimpleUDPClient("127.0.0.1", port).send_message("/masq/scene/cue", 2)
        beat(lambda b: b.get("cue") == 2, "cue 2")

        # the camera file disappears (the video ends, it cannot be reopened) and a new recording takes its place
        # (loop = false: the file that already played is not played again; a new one is)
        camera.rename(tmp_path / "away.avi")
        gone = beat(lambda b: b["devices"]["camera"]["state"] != "connected" and "no such file" in
                    b["devices"]["camera"]["reason"], "the camera lost", timeout=20)
        assert gone["pid"] == pid
        camera_video(camera)
        back = beat(lambda b: b["devices"]["camera"]["connects"] >= 2 and b["frames"] > gone["frames"] + 10,
                    "the camera back", timeout=30)
        assert back["pid"] == pid  # the show kept presenting throughout: the same engine, more frames

        # a flood of garbage at the OSC port: counted, and the show goes on
        sock, rng = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), random.Random(9)
        before = back["frames"]
        for i in range(3000):
            junk = rng.randbytes(rng.randrange(1, 200)) if i % 3 else b"/masq/walk/speed\0\0\0\0,s\0\0hi\0\0"
            sock.sendto(junk, ("127.0.0.1", port))
            if i % 100 == 99:
                time.sleep(0.005)  # bursts the socket buffer can hold: the receiver sees most of them
        sock.close()
        flooded = beat(lambda b: b["osc"]["packets"] >= 500 and b["frames"] > before + 20, "frames after the flood")
        assert flooded["pid"] == pid and flooded["osc"]["malformed"] + flooded["osc"]["rate_limited"] > 300
        assert urllib.request.urlopen(f"http://127.0.0.1:{status}/api/status", timeout=5).status == 200

        # kill -9: the new engine starts at the show time and cue where the old one was
        time.sleep(1.1)  # one more heartbeat read by the supervisor
        t_before = kiosk.state()["heartbeat"]["t"]
        os.kill(pid, signal.SIGKILL)
        state = kiosk.playing(not_pid=pid, timeout=60)
        again = state["heartbeat"]
        assert again["t"] >= t_before - 1.5 and again["t"] > 5  # not 0: resumed (within a heartbeat)
        assert again["cue"] == 2
        cmdline = Path(f"/proc/{state['child']['pid']}/cmdline").read_bytes().split(b"\0")
        assert b"--start-at" in cmdline and b"--cue" in cmdline
        assert state["restarts"] == 1
