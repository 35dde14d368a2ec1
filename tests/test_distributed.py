"""The offline render on a real local Ray cluster: frame-identical to the single-process render (PNGs
byte for byte, a recorded set replayed), the MP4 from `render --workers` decoded and compared, and a
worker process killed mid-job whose chunk Ray re-runs, the result still identical."""

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine import show as shows
from engine.sinks.images import partial_path
from engine.sinks.video import read_frames

from .conftest import DEFAULT_SHOW, masquerade

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'masquerade[distributed]')")

SIZE, FPS, SECONDS = "160x96", 12, 3  # 36 frames
SET = [  # a recorded set: speed changes make walk time differ from show time, so chunks must catch up
    '{"t": 0.3, "source": "osc:/masq/walk/speed", "value": 0.9}',
    '{"t": 1.1, "source": "osc:/masq/walk/speed", "value": 0.15}',
    '{"t": 1.9, "source": "osc:/masq/walk/truncation", "value": 0.35}',
]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The single-process render of a replayed set: PNGs and an MP4."""
    folder = tmp_path_factory.mktemp("reference")
    recording = folder / "set.jsonl"
    recording.write_text("\n".join(SET) + "\n")
    for out in (folder / "png", folder / "piece.mp4"):
        r = masquerade("render", DEFAULT_SHOW, "-o", out, "--seconds", SECONDS, "--fps", FPS, "--size", SIZE,
                       "--replay", recording, "-q")
        assert r.returncode == 0, r.stderr
    return folder


def render_on_ray(out: Path, recording: Path, chunk: int = 6) -> int:
    from engine.distributed import render_distributed

    return render_distributed(shows.load(DEFAULT_SHOW), out, seconds=SECONDS, size=(160, 96), fps=FPS,
                              progress=False, replay=recording, workers=2, chunk=chunk)


def same_pngs(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert len(names) == SECONDS * FPS and names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs"


def test_replayed_controls_catch_up_before_a_chunk(tmp_path):
    """The replay really moves walk time away from show time, and catching up reproduces it exactly."""
    from engine.clock import FixedStep
    from engine.controls.record import Recording
    from engine.controls.state import ControlState
    from engine.distributed import catch_up
    from engine.pipeline import Pipeline, make_bus

    show = shows.load(DEFAULT_SHOW)
    (tmp_path / "set.jsonl").write_text("\n".join(SET) + "\n")
    recording = Recording.load(tmp_path / "set.jsonl")
    full = Pipeline(show, "cpu", ControlState(make_bus(show), replay=recording))
    clock = FixedStep(FPS)
    for i in range(25):
        full.generate(clock.at(i))
    caught = Pipeline(show, "cpu", ControlState(make_bus(show), replay=recording))
    catch_up(caught, clock, 25)
    assert caught.controls.walk_time == full.controls.walk_time
    assert abs(full.controls.walk_time - 24 / FPS) > 0.3, "the set did not change the walk's pace"
    assert np.array_equal(caught.generate(clock.at(25)).rgb, full.generate(clock.at(25)).rgb)


def test_ray_render_is_frame_identical_to_one_process(cluster, reference, tmp_path):
    assert render_on_ray(tmp_path / "png", reference / "set.jsonl") == SECONDS * FPS
    same_pngs(reference / "png", tmp_path / "png")


def test_render_workers_writes_the_same_mp4(reference, tmp_path):
    """The command as a user types it (its own local Ray): the joined MP4 decodes to the same frames."""
    out = tmp_path / "piece.mp4"
    r = masquerade("render", DEFAULT_SHOW, "-o", out, "--seconds", SECONDS, "--fps", FPS, "--size", SIZE,
                   "--replay", reference / "set.jsonl", "--workers", 2, "-q", timeout=240)
    assert r.returncode == 0, r.stderr
    ours, theirs = read_frames(out), read_frames(reference / "piece.mp4")
    assert len(ours) == SECONDS * FPS
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert np.array_equal(a, b), f"frame {i} differs"


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the parent's pid
        if pid == ancestor:
            return True
    return False


def running_chunks() -> list[int]:
    """Pids of this test's Ray workers that are rendering a chunk right now (Ray titles them so)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                title = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::render_chunk") and _descends_from(int(proc.name), os.getpid()):
                found.append(int(proc.name))
    return found


def test_a_killed_worker_is_rerun_and_the_render_is_identical(cluster, reference, tmp_path):
    out, result, killed = tmp_path / "png", {}, []

    def render():
        try:
            result["frames"] = render_on_ray(out, reference / "set.jsonl", chunk=6)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = e

    thread = threading.Thread(target=render)
    thread.start()
    deadline = time.monotonic() + 60
    while not killed and thread.is_alive() and time.monotonic() < deadline:
        pids = running_chunks()
        writing = partial_path(out)  # frames land here until the render has them all
        if pids and (writing.exists() and any(writing.iterdir())):  # mid-job: some frames are already written
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
        time.sleep(0.01)
    thread.join(120)
    assert killed, "no chunk was caught running"
    assert "error" not in result, result.get("error")
    assert result["frames"] == SECONDS * FPS
    same_pngs(reference / "png", out)


def test_ray_auto_without_a_cluster_starts_a_local_one(tmp_path):
    out = tmp_path / "png"
    r = masquerade("render", DEFAULT_SHOW, "-o", out, "--seconds", 0.5, "--fps", 8, "--size", "64x48",
                   "--workers", 2, "--ray", "auto", "-q", env={**os.environ, "RAY_ADDRESS": ""})
    assert r.returncode == 0, r.stderr
    assert len(list(out.glob("*.png"))) == 4


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130)])
def test_a_signal_mid_ray_render_keeps_the_frames_so_far_and_says_where(tmp_path, sig, status):
    """`render --workers` stops as a one-process render does: between chunks, the chunks written so far in the
    partial file (it plays), nothing under the final name, one line, exit 130."""
    import re
    import subprocess
    import sys

    from .conftest import ROOT, until

    out = tmp_path / "piece.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "render", str(DEFAULT_SHOW), "-o", str(out),
                             "--seconds", "600", "--fps", str(FPS), "--size", SIZE, "--workers", "2", "-q"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / "piece.partial.mp4"
    try:
        until(lambda: (partial.exists() and partial.stat().st_size > 20_000) or proc.poll() is not None, 180,
              "the first chunks written")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status, err[-2000:]
    said = re.search(r"interrupted at frame (\d+) of 7200; the frames so far are in (\S+)", err)
    assert said and said.group(2) == str(partial), err[-2000:]
    assert not out.exists() and "Traceback" not in err
    assert len(read_frames(partial)) == int(said.group(1)) > 0
