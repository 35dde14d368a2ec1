"""Live sinks for real: a stream received on a UDP socket and decoded, a receiver that stops reading
(its frames dropped and counted while the window keeps its pace), a missing virtual camera that leaves
the show running, NDI received on loopback, and `[[sinks]]` rows checked on load."""

import io
import os
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine import show as shows
from engine import sinks
from engine.frame import Tick
from engine.sinks.live import Feed, Outputs

from .conftest import DEFAULT_SHOW, masquerade


def gradient(i: int, w: int = 160, h: int = 96) -> np.ndarray:
    """A frame that differs from its neighbours: a bright bar moving across a dark gradient."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 2] = np.linspace(0, 120, w, dtype=np.uint8)[None, :]
    x = (i * 5) % (w - 16)
    rgb[:, x:x + 16] = (230, 200, 40)
    return rgb


class UdpReceiver:
    """Every datagram sent to a local port, kept in order (a large buffer: nothing lost on loopback)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.data, self.stopped = bytearray(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.is_set():
            try:
                self.data += self.sock.recv(65536)
            except TimeoutError:
                continue

    def stop(self) -> bytes:
        time.sleep(0.3)  # the last datagrams are in flight on loopback
        self.stopped.set()
        self.thread.join()
        self.sock.close()
        return bytes(self.data)


def test_stream_over_udp_is_received_and_decoded_back():
    import av

    receiver = UdpReceiver()
    sink = sinks.open_sink("stream", {"url": f"udp://127.0.0.1:{receiver.port}"}, size=(160, 96), fps=30)
    sent = [gradient(i) for i in range(30)]
    for i, rgb in enumerate(sent):
        sink.write(rgb, Tick(i, i / 30))
    sink.close()
    data = receiver.stop()
    assert len(data) > 0 and len(data) % 188 == 0  # whole MPEG-TS packets
    with av.open(io.BytesIO(data), format="mpegts") as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        got = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(got) == 30 and got[0].shape == (96, 160, 3)
    for i, (a, b) in enumerate(zip(got, sent)):
        error = np.abs(a.astype(int) - b).mean()
        assert error < 12, f"frame {i}: mean error {error:.1f} levels"
        bar = int(np.argmax(a[..., 0].mean(axis=0)))  # where the bright bar is
        assert abs(bar - ((i * 5) % 144 + 8)) <= 8, f"frame {i} is not the frame sent"


def test_a_receiver_that_stops_reading_loses_frames_not_the_show():
    stalled = sinks.open_sink("pipe", {"command": ["sleep", "60"]}, size=(256, 144), fps=30)  # never reads stdin
    healthy = sinks.create("null")
    outputs = Outputs([Feed("stalled", stalled), Feed("healthy", healthy, depth=8)])
    waits = []
    for i in range(40):
        rgb = np.full((144, 256, 3), i, np.uint8)  # 110 KB: more than a pipe holds, so the first write blocks
        started = time.perf_counter()
        outputs.offer(rgb, Tick(i, i / 30))
        waits.append(time.perf_counter() - started)
        time.sleep(0.01)
    assert max(waits) < 0.05, f"handing a frame on took {max(waits) * 1000:.0f} ms"
    started = time.perf_counter()
    reports = outputs.close()
    assert time.perf_counter() - started < 6
    assert reports["stalled"].written == 0
    assert reports["stalled"].dropped >= 36  # one stuck in the pipe, two waiting, the rest dropped
    assert stalled.process.poll() is not None, "the stuck receiver was not ended"
    assert reports["healthy"].written + reports["healthy"].dropped == 40 and reports["healthy"].written >= 30
    assert healthy.last_index == 39


def test_a_failing_sink_is_switched_off_with_its_reason():
    sink = sinks.open_sink("pipe", {"command": ["true"]}, size=(256, 144), fps=30)  # exits at once
    sink.process.wait()
    feed = Feed("quitter", sink, lossless=True)
    done = threading.Event()

    def offer_and_close():  # in a thread: a regression (an offer waiting on the dead sink) fails, never hangs
        for i in range(5):
            feed.offer(np.zeros((144, 256, 3), np.uint8), Tick(i, i / 30))
        done.report = feed.close()
        done.set()

    threading.Thread(target=offer_and_close, daemon=True).start()
    assert done.wait(30), "a lossless feed waited on a sink that had stopped"
    assert done.report.written == 0 and "stopped reading" in done.report.error


def write_show(tmp_path: Path, rows: str) -> Path:
    text = DEFAULT_SHOW.read_text(encoding="utf-8") + "\n" + rows
    path = tmp_path / "show.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_virtual_camera_and_other_platforms_leave_the_show_running(tmp_path):
    if any(Path("/dev").glob("video*")):
        pytest.skip("this machine has video devices; the missing-device path is not reachable")
    frames = tmp_path / "frames"
    show = write_show(tmp_path, f'''
[[sinks]]
kind = "virtualcam"

[[sinks]]
kind = "{"syphon" if sys.platform != "darwin" else "spout"}"

[[sinks]]
kind = "images"
folder = "{frames}"
''')
    r = masquerade("run", show, "--headless", "--frames", 6, "--size", "128x72", "--osc-port", 0)
    assert r.returncode == 0, r.stderr
    assert "[[sinks]] #1 (virtualcam) is off for this run" in r.stderr and "v4l2loopback" in r.stderr
    assert "[[sinks]] #2" in r.stderr and "exists only on" in r.stderr
    assert len(list(frames.glob("*.png"))) == 6  # headless: a file sink keeps every frame


def test_sink_rows_are_checked_when_the_show_loads(tmp_path):
    bad = write_show(tmp_path, '[[sinks]]\nkind = "stream"\nurl = "udp://127.0.0.1:5004"\nbitrate = 9\n')
    r = masquerade("run", bad, "--headless", "--frames", 1)
    assert r.returncode == 2
    assert "[[sinks]] #1 (stream): unknown key 'bitrate'" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(shows.ShowError, match=r"\[\[sinks\]\] #2 \(ndi\): fps is not a sink key"):
        shows.parse({"sinks": [{"kind": "null"}, {"kind": "ndi", "fps": 60}]})
    with pytest.raises(shows.ShowError, match=r"#1 \(v4l2\): kind must be one of .*virtualcam"):
        shows.parse({"sinks": [{"kind": "v4l2"}]})


def _play_in_a_window(show_path: str, frames: int):
    from engine import show as shows
    from engine.loop import LiveOptions, run_live

    run = run_live(shows.load(show_path), LiveOptions(size=(320, 180), frames=frames, osc_port=0))
    return run.frames, run.seconds, run.stage_ms, run.sinks


def test_window_keeps_its_pace_while_a_sink_is_stalled(tmp_path, xvfb):
    """The real window (Xvfb) with a receiver that never reads: every frame is shown, handing frames to
    the stuck sink costs the loop nothing, and its frames are dropped and counted."""
    import multiprocessing

    show = write_show(tmp_path, '[[sinks]]\nkind = "pipe"\ncommand = ["sleep", "60"]\n\n[[sinks]]\nkind = "null"\n')
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh process, as test_window.py explains
        shown, seconds, stage_ms, reports = pool.apply_async(_play_in_a_window, (str(show), 45)).get(timeout=90)
    assert shown == 45
    stalled, healthy = reports[f"{show} [[sinks]] #1 (pipe)"], reports[f"{show} [[sinks]] #2 (null)"]
    assert stalled.written == 0 and stalled.dropped >= 40
    assert healthy.written >= 40
    assert stage_ms["write"] < 5, f"handing frames on took {stage_ms['write']:.1f} ms a frame"


def ndi_ports() -> list[int]:
    """TCP ports this process listens on (the NDI sender's), from /proc."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
                ports.append(int(parts[1].rsplit(":", 1)[1], 16))
    return sorted(set(ports))


def test_ndi_source_is_received_on_loopback():
    try:
        sender = sinks.open_sink("ndi", {"name": "masquerade-test"}, size=(96, 64), fps=30)
    except sinks.Unavailable as e:
        pytest.skip(str(e))
    import NDIlib as ndi

    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[:, :48] = (220, 40, 30)
    rgb[:, 48:] = (20, 60, 210)
    received = None
    try:
        sender.write(rgb, Tick(0, 0.0))
        for port in ndi_ports():  # mDNS may be blocked here: connect by address, as a receiver can
            source = ndi.Source()
            source.ndi_name, source.url_address = "masquerade-test", f"127.0.0.1:{port}"
            receiver = ndi.recv_create_v3(ndi.RecvCreateV3(color_format=ndi.RECV_COLOR_FORMAT_RGBX_RGBA))
            ndi.recv_connect(receiver, source)
            deadline = time.monotonic() + 4
            while received is None and time.monotonic() < deadline:
                sender.write(rgb, Tick(1, 1 / 30))
                kind, video, _, _ = ndi.recv_capture_v2(receiver, 200)
                if kind == ndi.FRAME_TYPE_VIDEO:
                    received = video.data[..., :3].copy()
                    ndi.recv_free_video_v2(receiver, video)
            ndi.recv_destroy(receiver)
            if received is not None:
                break
    finally:
        sender.close()
    assert received is not None, "no NDI frame came back on loopback"
    assert received.shape == (64, 96, 3)
    assert np.abs(received.astype(int) - rgb).mean() < 20  # NDI's codec is lossy; the colours are there


def test_sinks_from_the_command_line_several_at_once(tmp_path):
    from engine.sinks.video import read_frames

    frames, video = tmp_path / "frames", tmp_path / "set.mp4"
    r = masquerade("run", DEFAULT_SHOW, "--headless", "--frames", 8, "--size", "128x72", "--osc-port", 0,
                   "--sink", f"images:{frames}", "--sink", f"video:{video}", "--sink", "syphon")
    assert r.returncode == 0, r.stderr
    assert len(list(frames.glob("*.png"))) == 8 and len(read_frames(video)) == 8
    assert "--sink syphon is off for this run" in r.stderr  # the others went on
    bad = masquerade("run", DEFAULT_SHOW, "--headless", "--frames", 1, "--sink", "ndj:Masquerade")
    assert bad.returncode == 2 and "--sink ndj:Masquerade: the kind must be one of" in bad.stderr
    assert sinks.parse_spec("stream:udp://127.0.0.1:5004") == ("stream", {"url": "udp://127.0.0.1:5004"})
    assert sinks.parse_spec("pipe:ffplay -") == ("pipe", {"command": ["ffplay", "-"]})
