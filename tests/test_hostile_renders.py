"""What a hostile tester did to renders, sinks and windows (issue 15), each reproduced for real: signals to
the real command mid-render, a full tmpfs, a read-only folder, odd sizes, a sink whose receiver dies while
the loop waits on it, a second X screen, `[osc] feedback_per_second`, and a camera file steering a render.
Every wait is bounded: a regression fails, it never hangs."""

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.frame import Tick
from engine.sinks.live import Feed
from engine.sinks.video import read_frames

from .conftest import DEFAULT_MODEL, DEFAULT_SHOW, ROOT, masquerade, until
from .test_controls_camera import FPS as VIDEO_FPS
from .test_controls_camera import Recorder, square_frames, write_video


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "engine.cli", *map(str, args)]


def errors(stderr: str) -> list[str]:
    """The lines a user reads as errors (log lines and a progress bar aside)."""
    return [line for line in stderr.splitlines() if line.startswith("masquerade: error")]


def started(stderr: str) -> bool:
    """Whether the render's progress bar appeared (its first frame was on the way)."""
    return re.search(r"\| *\d+/\d+ \[", stderr) is not None


class Stderr:
    """A child's stderr read as it comes (a progress bar rewrites its line with \\r)."""

    def __init__(self, pipe):
        self.pipe, self.chunks = pipe, []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while chunk := os.read(self.pipe.fileno(), 65536):
            self.chunks.append(chunk)

    def text(self) -> str:
        self.thread.join(10)
        return b"".join(self.chunks).decode(errors="replace")

    def frames(self) -> int:
        done = re.findall(rb"(\d+)/\d+ \[", b"".join(self.chunks))
        return int(done[-1]) if done else 0


def can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=20).returncode == 0


needs_unshare = pytest.mark.skipif(not can_unshare(), reason="needs a user and mount namespace (unshare -rm)")


# --- renders: interrupted, a full disk, an unwritable folder -------------------------------------------------

@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_render_leaves_nothing_under_the_final_name(tmp_path, sig, status):
    out = tmp_path / "piece.mp4"
    proc = subprocess.Popen(cli("render", DEFAULT_SHOW, "-o", out, "--seconds", 600, "--fps", 12, "--size", "128x72"),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = Stderr(proc.stderr)
    try:
        until(lambda: err.frames() >= 5 or proc.poll() is not None, timeout=120, what="five frames rendered")
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.text()
    assert proc.returncode == status, text
    said = re.search(r"interrupted at frame (\d+) of 7200", text)
    assert said, text
    assert not out.exists(), "a short file under the final name"
    partial = tmp_path / "piece.partial.mp4"
    assert str(partial) in text, "the message says where the frames so far are"
    assert len(read_frames(partial)) == int(said.group(1)) >= 5  # the kept part decodes, every frame in it
    assert "Traceback" not in text


@needs_unshare
def test_a_full_disk_is_one_line_with_the_path_and_leaves_nothing_behind(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    render = " ".join(cli("render", DEFAULT_SHOW, "-o", disk / "piece.mp4", "--seconds", 10, "--size", "640x360",
                          "-q"))
    script = f"mount -t tmpfs -o size=200k tmpfs {disk} && {{ {render}; rc=$?; ls -A {disk}; exit $rc; }}"
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    [line] = errors(r.stderr)
    assert "piece" in line and str(disk) in line and "No space left on device" in line, line
    assert "removed" in line
    assert r.stdout.strip() == "", f"left on the full disk: {r.stdout}"


def test_an_output_under_a_file_fails_before_rendering_in_one_line(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    for out in (blocker / "piece.mp4", blocker / "frames"):
        r = masquerade("render", DEFAULT_SHOW, "-o", out, "--seconds", 1, "--size", "128x72")
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        [line] = errors(r.stderr)
        assert str(blocker) in line
        assert not started(r.stderr), "the render started before its output was opened"


@needs_unshare
def test_a_read_only_folder_fails_before_rendering_in_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    render = " ".join(cli("render", DEFAULT_SHOW, "-o", folder / "piece.mp4", "--seconds", 1, "--size", "128x72"))
    r = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro tmpfs {folder} && {render}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    [line] = errors(r.stderr)
    assert str(folder) in line and "Read-only file system" in line, line
    assert not started(r.stderr), "the render started before its output was opened"


def test_a_headless_run_whose_output_fails_does_not_exit_0(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    r = masquerade("run", DEFAULT_SHOW, "--headless", "--frames", 3, "--size", "128x72", "--osc-port", 0,
                   "--out", blocker / "x.mp4")
    assert r.returncode == 2, r.stderr
    [line] = errors(r.stderr)
    assert str(blocker) in line


# --- odd sizes ---------------------------------------------------------------------------------------------

def odd_show(tmp_path) -> Path:
    path = tmp_path / "odd.toml"
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[output]\nsize = [99, 61]\n')
    return path


@pytest.mark.parametrize("command", ["render", "run"])
def test_an_odd_size_for_a_video_is_refused_naming_the_option(tmp_path, command):
    out = tmp_path / "odd.mp4"
    if command == "render":
        r = masquerade("render", DEFAULT_SHOW, "-o", out, "--seconds", 0.2, "--size", "321x181")
    else:
        r = masquerade("run", DEFAULT_SHOW, "--headless", "--frames", 3, "--osc-port", 0, "--size", "321x181",
                       "--out", out)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    [line] = errors(r.stderr)
    assert "--size 321x181" in line and "even width and height" in line and "322x182" in line, line
    assert not out.exists() and not list(tmp_path.glob("*.mp4"))


@pytest.mark.parametrize("command", ["render", "run"])
def test_an_odd_show_size_for_a_video_is_refused_naming_the_show_key(tmp_path, command):
    out = tmp_path / "odd.mp4"
    show = odd_show(tmp_path)
    if command == "render":
        r = masquerade("render", show, "-o", out, "--seconds", 0.2)
    else:
        r = masquerade("run", show, "--headless", "--frames", 3, "--osc-port", 0, "--out", out)
    assert r.returncode == 2, r.stderr
    [line] = errors(r.stderr)
    assert "output.size" in line and "99x61" in line and "--size 100x62" in line, line
    assert not list(tmp_path.glob("*.mp4"))
    r = masquerade("render", show, "-o", tmp_path / "pngs", "--seconds", 0.1)  # PNGs take any size
    assert r.returncode == 0, r.stderr


# --- a lossless sink whose receiver dies -------------------------------------------------------------------

class DiesWhenToldTo:
    """A file sink that blocks in its first write until `die` is set, then fails (the disk went away)."""

    def __init__(self):
        self.entered, self.die = threading.Event(), threading.Event()

    def write(self, rgb, tick):
        self.entered.set()
        self.die.wait(30)
        raise OSError(28, "No space left on device")

    def close(self):
        pass


def bounded(fn, seconds: float, what: str):
    """Run `fn` in a thread; fail (not hang) when it has not returned after `seconds`."""
    result, done = [], threading.Event()

    def body():
        result.append(fn())
        done.set()

    threading.Thread(target=body, daemon=True).start()
    assert done.wait(seconds), f"{what} did not return within {seconds} s"
    return result[0]


def test_a_lossless_feed_never_waits_on_a_sink_that_died():
    sink = DiesWhenToldTo()
    feed = Feed("dying", sink, depth=2, lossless=True)
    frame = np.zeros((8, 8, 3), np.uint8)
    feed.offer(frame, Tick(0, 0.0))
    assert sink.entered.wait(10)  # the sink's thread holds frame 0
    feed.offer(frame, Tick(1, 0.1))
    feed.offer(frame, Tick(2, 0.2))  # the queue is full: the next offer waits for room
    threading.Timer(0.3, sink.die.set).start()  # ... and the sink dies while it waits
    bounded(lambda: feed.offer(frame, Tick(3, 0.3)), 10, "offer to a dead sink")
    report = bounded(feed.close, 10, "closing a dead sink")
    assert report.written == 0 and "No space left" in report.error


# --- a second X screen -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_screens():
    if shutil.which("Xvfb") is None or shutil.which("xwininfo") is None:
        pytest.skip("needs Xvfb and xwininfo (setup.sh installs xvfb and x11-utils)")
    display = f":{300 + os.getpid() % 500}"
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", "800x600x24", "-screen", "1", "640x480x24",
                             "-nolisten", "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until(lambda: Path(f"/tmp/.X11-unix/X{display[1:]}").exists(), timeout=20, what="Xvfb")
        yield display
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def windows_on(display: str, screen: int, title: str = "Masquerade") -> list[str]:
    out = subprocess.run(["xwininfo", "-root", "-tree", "-display", f"{display}.{screen}"], capture_output=True,
                         text=True, timeout=20).stdout
    return [line for line in out.splitlines() if f'"{title}' in line]


def test_fullscreen_on_the_second_x_screen_opens_there(two_screens, tmp_path):
    env = {**os.environ, "DISPLAY": two_screens, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cli("run", DEFAULT_SHOW, "--fullscreen", "--display", 1, "--osc-port", 0,
                                "--device", "cpu"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    err = Stderr(proc.stderr)
    try:
        until(lambda: windows_on(two_screens, 1) or windows_on(two_screens, 0) or proc.poll() is not None,
              timeout=120, what="the window")
        on_first, on_second = windows_on(two_screens, 0), windows_on(two_screens, 1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not on_first, f"opened on screen 0: {on_first} ({err.text()})"
    assert on_second and "640x480+0+0" in on_second[0], on_second  # fullscreen: the whole second screen


def test_a_display_that_does_not_exist_is_one_line_naming_those_that_do(two_screens):
    env = {**os.environ, "DISPLAY": two_screens}
    r = subprocess.run(cli("run", DEFAULT_SHOW, "--display", 2, "--osc-port", 0), cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    [line] = errors(r.stderr)
    assert "--display 2" in line and "0 (800x600)" in line and "1 (640x480)" in line, line


# --- [osc] feedback_per_second -----------------------------------------------------------------------------

def osc_show(tmp_path, osc: str) -> Path:
    path = tmp_path / "osc.toml"
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[osc]\nport = 0\n{osc}\n'
                    '[[bind]]\nsource = "osc:/other/fader"\ntarget = "walk.speed"\n')
    return path


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "1001"])
def test_feedback_per_second_is_checked_at_load(tmp_path, value):
    from engine import show as shows

    with pytest.raises(shows.ShowError, match="osc.feedback_per_second"):
        shows.load(osc_show(tmp_path, f'feedback = "127.0.0.1:9"\nfeedback_per_second = {value}'))


def test_feedback_per_second_paces_what_the_controller_is_sent(tmp_path):
    from engine import show as shows
    from engine.inputs import start_osc
    from engine.pipeline import make_bus

    tablet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tablet.bind(("127.0.0.1", 0))
    tablet.settimeout(0.05)
    show = shows.load(osc_show(tmp_path, f'feedback = "127.0.0.1:{tablet.getsockname()[1]}"\n'
                                         'feedback_per_second = 4'))
    assert show.osc.feedback_per_second == 4
    bus = make_bus(show)
    receiver = start_osc(show, bus, 0)
    got = []
    try:
        start = time.monotonic()
        while time.monotonic() - start < 2.0:  # another fader moves walk.speed all the time
            t = time.monotonic() - start
            bus.post("osc:/other/fader", 0.5 + 0.4 * math.sin(7 * t), at=t)
            bus.snapshot(t)
            try:
                got.append(tablet.recv(4096))
            except TimeoutError:
                pass
    finally:
        receiver.stop()
        tablet.close()
    speed = [d for d in got if d.startswith(b"/masq/walk/speed")]
    assert 4 <= len(speed) <= 2.0 * 4 + 2, len(speed)  # 4 a second, not the default 20


# --- a camera in a render ----------------------------------------------------------------------------------

def camera_show(tmp_path, camera: str | None) -> Path:
    path = tmp_path / f"cam-{'none' if camera is None else 'on'}.toml"
    text = f'[model]\npath = "{DEFAULT_MODEL}"\n[output]\nsize = [64, 64]\n'
    if camera is not None:
        text += f"[camera]\n{camera}\n"
    text += '[[bind]]\nsource = "camera:motion"\ntarget = "walk.speed"\ncurve = "exp"\n'
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def visitor(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("camera") / "visitor.mp4", square_frames(40, step=3))


def pngs(folder: Path) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))]


def test_a_camera_file_steers_a_render_frame_exact(tmp_path, visitor):
    steered = camera_show(tmp_path, f'source = "{visitor}"\nloop = true')
    plain = camera_show(tmp_path, None)
    runs = {}
    for name, show in (("a", steered), ("b", steered), ("plain", plain)):
        r = masquerade("render", show, "-o", tmp_path / name, "--seconds", 1.5, "--fps", 12, "-q")
        assert r.returncode == 0, r.stderr
        runs[name] = pngs(tmp_path / name)
    assert len(runs["a"]) == 18
    for a, b in zip(runs["a"], runs["b"], strict=True):
        assert np.array_equal(a, b)  # the same render twice: the same frames
    differ = [not np.array_equal(a, p) for a, p in zip(runs["a"], runs["plain"])]
    assert sum(differ) >= 10, "the camera file did not steer the render"


def test_the_camera_feed_reads_the_file_frame_at_show_time(visitor):
    from engine.controls.camera import CameraAnalysis, FileFeed

    feed, bus = FileFeed(visitor, loop=True), Recorder()
    render_fps = 7.0
    times = [i / render_fps for i in range(20)]  # 0..2.7 s: past the file's 2 s end, so it loops
    for t in times:
        feed(bus, t)
    posted = [v for _, s, v in bus.events if s == "camera:motion"]
    assert len(posted) == len(times)
    # what a camera at the file's own rate would have seen: every frame in order, looping at the end
    import cv2

    cap, frames = cv2.VideoCapture(str(visitor)), []
    while (ok_frame := cap.read())[0]:
        frames.append(ok_frame[1])
    cap.release()
    analysis, expected, seen = CameraAnalysis(), [], -1
    for t in times:
        want = math.floor(t * VIDEO_FPS + 1e-6)
        while seen < want:
            seen += 1
            features = analysis(frames[seen % len(frames)], seen / VIDEO_FPS)
        expected.append(features["motion"])
    assert posted == pytest.approx(expected)


def test_a_live_camera_in_a_render_is_one_warning(tmp_path):
    show = camera_show(tmp_path, 'source = "99"')
    r = masquerade("render", show, "-o", tmp_path / "pngs", "--seconds", 0.2, "-q")
    assert r.returncode == 0, r.stderr
    said = [line for line in r.stderr.splitlines() if "WARNING" in line or "error" in line]
    assert len(said) == 1 and "camera.source '99'" in said[0] and "live camera" in said[0], r.stderr


def test_a_camera_file_that_does_not_loop_is_not_replayed_after_a_reconnect(tmp_path):
    from engine.controls.camera import Camera

    video = write_video(tmp_path / "once.mp4", square_frames(10, 4))
    cam = Camera(Recorder(), video, pace=False, loop=False, decay=0.05, backoff=(0.05, 0.1))
    with cam:
        until(lambda: cam.state == "lost", what="the end of the file")
        until(lambda: len(cam.attempt_times) >= 4, what="three more attempts")
    assert cam.stats.reads == 10 and cam.stats.connects == 1, cam.stats
    assert "end of file" in cam.reason


def test_a_new_file_put_where_a_camera_file_ended_is_played(tmp_path):
    from engine.controls.camera import Camera

    video = write_video(tmp_path / "once.mp4", square_frames(10, 4))
    cam = Camera(Recorder(), video, pace=False, loop=False, decay=0.05, backoff=(0.05, 0.1))
    with cam:
        until(lambda: cam.state == "lost", what="the end of the file")
        fresh = write_video(tmp_path / "next.mp4", square_frames(6, 4))
        os.replace(fresh, video)  # a new recording at the same path: another file
        until(lambda: cam.stats.reads >= 16, what="the new file read")
    assert cam.stats.connects == 2, cam.stats
