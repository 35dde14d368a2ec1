"""OSC into the running engine: real UDP packets change the frames, garbage changes nothing, and a
recorded set re-renders offline to the very same frames."""

import socket
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image
from pythonosc.udp_client import SimpleUDPClient

from .conftest import DEFAULT_SHOW, ROOT, masquerade

FRAMES, SIZE = 45, "128x128"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def frames(folder):
    return [np.asarray(Image.open(p)) for p in sorted(folder.iterdir())]


def play_while_sending(out, record=None):
    """`masquerade run --headless` with a performer on OSC: speed pushed to its top, then garbage."""
    port = free_port()
    args = [sys.executable, "-m", "engine.cli", "run", DEFAULT_SHOW, "--headless", "--frames", FRAMES,
            "--size", SIZE, "--out", out, "--osc-port", port]
    if record:
        args += ["--record", record]
    proc = subprocess.Popen(list(map(str, args)), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()

    def perform():
        client = SimpleUDPClient("127.0.0.1", port)
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        while not stop.is_set():
            client.send_message("/masq/walk/speed", 1.0)  # the fader at the top: 8x
            client.send_message("/masq/walk/speed", "fast")  # wrong type: counted, ignored
            raw.sendto(b"\x00garbage\xff" * 3, ("127.0.0.1", port))  # not OSC at all
            time.sleep(0.02)
        raw.close()

    performer = threading.Thread(target=perform, daemon=True)
    performer.start()
    try:
        _, stderr = proc.communicate(timeout=300)
    finally:
        stop.set()
        performer.join()
    return proc.returncode, stderr


def test_osc_steers_the_running_show_and_a_recording_replays_it(tmp_path):
    quiet = tmp_path / "quiet"
    r = masquerade("run", DEFAULT_SHOW, "--headless", "--frames", FRAMES, "--size", SIZE, "--out", quiet,
                   "--osc-port", 0)
    assert r.returncode == 0, r.stderr

    live, record = tmp_path / "live", tmp_path / "set.jsonl"
    code, stderr = play_while_sending(live, record)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    calm, steered = frames(quiet), frames(live)
    assert len(steered) == FRAMES
    moved = [np.abs(a.astype(int) - b).mean() for a, b in zip(calm, steered)]
    assert moved[-1] > 5, "speed over OSC did not change what the show drew"
    events = record.read_text().splitlines()
    assert any("osc:/masq/walk/speed" in e for e in events)  # recorded as sources, with their show times

    replayed = tmp_path / "replayed"
    r = masquerade("render", DEFAULT_SHOW, "-o", replayed, "--seconds", FRAMES / 30, "--fps", 30, "--size", SIZE,
                   "--replay", record)
    assert r.returncode == 0, r.stderr
    for i, (a, b) in enumerate(zip(steered, frames(replayed), strict=True)):
        assert np.array_equal(a, b), f"frame {i} differs between the live set and its replay"


def test_bad_recording_is_named(tmp_path):
    bad = tmp_path / "set.jsonl"
    bad.write_text('{"t": 0.5, "source": "osc:/masq/walk/speed", "value": 1}\nnot json\n')
    r = masquerade("render", DEFAULT_SHOW, "-o", tmp_path / "x", "--seconds", 0.1, "--replay", bad)
    assert r.returncode == 2 and f"{bad}:2" in r.stderr and "Traceback" not in r.stderr


def test_port_in_use_leaves_the_show_running(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("0.0.0.0", 0))
        port = busy.getsockname()[1]
        r = masquerade("run", DEFAULT_SHOW, "--headless", "--frames", 3, "--size", "64x64", "--osc-port", port)
    assert r.returncode == 0, r.stderr
    assert "OSC is off for this run" in r.stderr and str(port) in r.stderr


def test_energy_makes_the_walk_stray_and_zero_leaves_it_alone():
    import torch

    from engine import show as shows
    from engine.frame import Tick
    from engine.pipeline import Pipeline

    show = shows.load(DEFAULT_SHOW)
    calm, stray = Pipeline(show, "cpu"), Pipeline(show, "cpu")
    stray.controls.bus.post("osc:/masq/walk/energy", 1.0, at=0.0)
    plain = [calm.generate(Tick(i, i / 30)).image for i in range(0, 60, 10)]
    wild = [stray.generate(Tick(i, i / 30)).image for i in range(0, 60, 10)]
    assert (plain[-1] - wild[-1]).abs().mean() > 0.02  # smoothed toward 1, the picture strays
    fresh = Pipeline(show, "cpu")  # energy 0: exactly the walk's own latent, nothing mixed in
    tick = Tick(5, 5 / 30)
    _, _, z, _ = fresh.advance(tick)  # the latent the generator is given
    torch.testing.assert_close(z, fresh.walk.step(tick))


def test_keyframe_buttons_cut_to_the_keyframe():
    import torch

    from engine import show as shows
    from engine.frame import Tick
    from engine.pipeline import Pipeline

    p = Pipeline(shows.load(DEFAULT_SHOW), "cpu")
    keys = p.walk.keys
    p.generate(Tick(0, 0.0))
    p.controls.bus.post("osc:/masq/keyframe/next", 1.0, at=0.5)
    p.generate(Tick(15, 0.5))
    assert p.controls.walk_time == p.walk.jump(0.5, step=1)  # resting on keyframe 2 (index 1)
    torch.testing.assert_close(p.walk.step(Tick(15, p.controls.walk_time))[0], keys[1])
    p.controls.bus.post("osc:/masq/keyframe/index", 5.0, at=1.0)
    p.generate(Tick(30, 1.0))
    torch.testing.assert_close(p.walk.step(Tick(30, p.controls.walk_time))[0], keys[4])
    before = p.controls.walk_time
    p.generate(Tick(31, 1.0 + 1 / 30))
    assert p.controls.walk_time > before  # and the walk goes on from there
