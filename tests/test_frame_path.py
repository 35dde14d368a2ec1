"""The frame path (engine/frame_path.py): super-resolution first, then the filters and the mirror at the work
size, through the real pipeline and real EGL renders; `[output] work_size` checked at load; the default show
runs the whole path, and every shipped show still renders."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from engine import frame_path
from engine import show as shows
from engine.controls import mirror
from engine.frame import Tick
from engine.pipeline import Pipeline

from .conftest import DEFAULT_MODEL, DEFAULT_SHOW, ROOT, masquerade
from .test_mirror import video, video_frames, write_video  # noqa: F401 - `video` is a fixture


def write_show(tmp_path, text, name="show"):
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[osc]\nenabled = false\n{text}')
    return path


def probe(pipeline, row):
    """The shapes row `row`'s filter is called with, through the pipeline's own calls."""
    seen = []
    pipeline.filters[row].register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    return seen


class Scaled(torch.nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale


def test_the_plan_puts_super_resolution_first_and_fits_to_the_work_size():
    rows = [Scaled(1), Scaled(4), Scaled(1)]
    path = frame_path.plan(64, rows, ["grade", "superres", "dream"])
    assert [(s.name, s.size) for s in path.stages] == [
        ("generate", (64, 64)), ("superres", (256, 256)), ("mirror", (256, 256)), ("grade", (256, 256)),
        ("dream", (256, 256))]
    wide = frame_path.plan(64, rows, ["grade", "superres", "dream"], (320, 180))
    assert [s.kind for s in wide.stages] == ["generate", "upscale", "fit", "mirror", "filter", "filter"]
    assert wide.work_size == (320, 180) and [s.row for s in wide.stages if s.kind == "filter"] == [0, 2]
    assert frame_path.plan(64, [], []).work_size == (64, 64)  # no rows: the generator's frame, as before


def test_fit_keeps_the_aspect():
    image = torch.rand(1, 3, 64, 64)
    contain = frame_path.fit(image, (128, 96), "contain", (0.0, 0.5, 1.0))
    assert contain.shape == (1, 3, 96, 128)
    assert torch.equal(contain[0, :, :, :16], torch.tensor([0.0, 0.5, 1.0])[:, None, None].expand(3, 96, 16))
    assert frame_path.fit(image, (128, 96), "cover").shape == (1, 3, 96, 128)
    assert frame_path.fit(image, (64, 64)) is image


def test_a_filter_sees_the_upscaled_frame_whatever_its_row(tmp_path):
    # grade is written before superres, and still sees the x4 frame
    show = shows.load(write_show(tmp_path, '[[filters]]\nkind = "grade"\ngain = 1.5\n[[filters]]\nkind = "superres"\n'))
    pipeline = Pipeline(show, "cpu")
    seen = probe(pipeline, 0)
    frame = pipeline.generate(Tick(0, 0.0))
    assert seen == [(1, 3, 256, 256)] and frame.image.shape == (1, 3, 256, 256)
    assert pipeline.work_size == (256, 256) and pipeline.path.describe().startswith("generate 64x64 -> superres 256")
    assert list(pipeline.times.mean_ms)[2:5] == ["generate", "superres", "grade"]  # timed in the order they ran


def test_a_filter_sees_the_work_size_and_the_compositor_takes_it(tmp_path):
    path = write_show(tmp_path, '[[filters]]\nkind = "grade"\n[output]\nwork_size = [320, 180]\nsize = [640, 360]\n'
                                'fit = "cover"\n')
    pipeline = Pipeline(shows.load(path), "cpu")
    seen = probe(pipeline, 0)
    assert pipeline.generate(Tick(0, 0.0)).rgb.shape == (180, 320, 3) and seen == [(1, 3, 180, 320)]
    out = tmp_path / "frames"
    r = masquerade("render", path, "-o", out, "--seconds", 0.1, "--fps", 20)
    assert r.returncode == 0, r.stderr
    frames = sorted(out.glob("*.png"))
    assert len(frames) == 2 and Image.open(frames[0]).size == (640, 360)


def test_the_mirror_reads_the_camera_at_the_work_size(tmp_path, video):  # noqa: F811
    path = write_show(tmp_path, f'[[filters]]\nkind = "superres"\n[[filters]]\nkind = "grade"\n[output]\nfps = 20\n'
                                f'work_size = 128\n[camera]\nsource = "{video}"\nmirror = 1.0\nflip = false\n')
    show = shows.load(path)
    pipeline = Pipeline(show, "cpu")
    pipeline.mirror = mirror.for_render(show)
    seen = probe(pipeline, 1)
    expected = mirror.framed(video_frames()[0], (128, 128)).astype(int)
    frame = pipeline.generate(Tick(0, 0.0))
    assert seen == [(1, 3, 128, 128)]
    assert np.abs(frame.rgb.astype(int) - expected).mean() < 4  # the camera's picture at 128, not a 64 px blur
    assert "superres" not in pipeline.times.mean_ms and "generate" not in pipeline.times.mean_ms
    show.camera = dataclasses.replace(show.camera, mirror=0.5)
    blended = Pipeline(show, "cpu")
    blended.mirror = mirror.for_render(show)
    assert blended.generate(Tick(0, 0.0)).rgb.shape == (128, 128, 3)
    assert "superres" in blended.times.mean_ms  # the model's frame upscaled first, then the camera over it


@pytest.mark.parametrize("value, expected", [
    ("255", "output.work_size must be even sides of 16..4096"),
    ("5000", "output.work_size must be .*0..4096"),
    ("[8192, 4096]", "output.work_size must be .*0..4096"),
    ("[0, 256]", "output.work_size must be even sides"),
    ("8", "output.work_size must be even sides"),
    ("1.5", "output.work_size must be a whole number"),
    ('"big"', "output.work_size must be a whole number"),
])
def test_a_bad_work_size_is_one_line_naming_file_and_key(tmp_path, value, expected):
    path = write_show(tmp_path, f"[output]\nwork_size = {value}\n")
    with pytest.raises(shows.ShowError, match=expected) as err:
        shows.load(path)
    assert str(path) in str(err.value)
    if value == "255":  # the command: exit 2, one line, no traceback
        r = masquerade("render", path, "-o", tmp_path / "x", "--seconds", 0.1)
        assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "output.work_size" in r.stderr, r.stderr


def test_the_default_show_renders_through_super_resolution(tmp_path):
    """Its frames are the SR's (not the compositor's Lanczos of the 64 px frame) and repeat byte for byte."""
    from engine.loop import render

    show = shows.load(DEFAULT_SHOW)
    assert [s.kind for s in show.filters][:1] == ["superres"]
    plain = tmp_path / "plain.toml"
    plain.write_text(DEFAULT_SHOW.read_text().split("[[filters]]")[0] +
                     "[output]\nbackground = [0.0, 0.0, 0.0]\n")  # the same walk, no filters
    renders = {}
    for name, path in (("sr", DEFAULT_SHOW), ("again", DEFAULT_SHOW), ("plain", plain)):
        render(shows.load(path), tmp_path / name, seconds=0.2, size=(512, 512), fps=10, device="cpu", progress=False)
        renders[name] = [np.asarray(Image.open(p)).astype(int) for p in sorted((tmp_path / name).glob("*.png"))]
    assert len(renders["sr"]) == 2
    for sr, again, plain_frame in zip(renders["sr"], renders["again"], renders["plain"], strict=True):
        assert np.array_equal(sr, again)
        assert np.abs(sr - plain_frame).mean() > 3  # not the plain upscale (and the grade alone is not all of it)
        assert sr.std() > 20  # a picture, not a blank


@pytest.mark.parametrize("path", sorted((ROOT / "shows").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_show_renders(path, tmp_path):
    from engine.loop import render

    show = shows.load(path)
    assert render(show, tmp_path / "out", seconds=2 / show.output.fps, size=(160, 90), device="cpu",
                  progress=False) == 2
    assert [Image.open(p).size for p in sorted((tmp_path / "out").glob("*.png"))] == [(160, 90)] * 2


def test_a_headless_runs_still_is_the_frame_the_render_writes(tmp_path):
    """The still a headless run saves is what the show presents: the composited frame at the output size
    (1280x720, through the super-resolution), the very frame a render writes at that time."""
    from engine.loop import LiveOptions, render, run_live

    show = shows.load(DEFAULT_SHOW)
    run_live(show, LiveOptions(device="cpu", headless=True, frames=3, stills=tmp_path / "stills", osc_port=0))
    (still,) = (tmp_path / "stills").glob("*.png")
    render(show, tmp_path / "frames", seconds=3 / show.output.fps, device="cpu", progress=False)
    last = sorted((tmp_path / "frames").glob("*.png"))[-1]
    assert Image.open(still).size == tuple(show.output.size) == (1280, 720)
    assert np.array_equal(np.asarray(Image.open(still)), np.asarray(Image.open(last)))


def test_a_work_size_the_device_cannot_hold_falls_back_to_the_largest_that_fits(tmp_path):
    """A 4096 px work size in a process whose memory is capped (an address-space limit: a small machine, or a
    GPU already full) gives one warning and the largest size that fits; the show plays."""
    import subprocess
    import sys

    show = tmp_path / "big.toml"
    show.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[output]\nsize = [256, 256]\nwork_size = 4096\n'
                    '[[filters]]\nkind = "grade"\n')
    code = f"""
import logging, resource
import torch
from engine import show as shows
from engine.controls.state import ControlState
from engine.frame import Tick
from engine.pipeline import Pipeline, make_bus
logging.basicConfig(level=logging.WARNING, format="%(message)s")
torch.set_num_threads(1)
show = shows.load({str(show)!r})
used = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
limit = used + 400 * 2**20  # room for a 2048 px frame (~50 MB a plane), not a 4096 px one (~200 MB a plane)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
pipeline = Pipeline(show, "cpu", ControlState(make_bus(show)))
frame = pipeline.generate(Tick(0, 0.0))
print("work", *pipeline.work_size, "frame", *frame.rgb.shape)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    w, h = (int(v) for v in out.stdout.split()[1:3])
    assert (w, h) != (4096, 4096) and w == h and w >= 512, out.stdout
    assert out.stdout.split()[4:7] == [str(h), str(w), "3"]  # the frame drawn at that size
    warnings = [line for line in out.stderr.splitlines() if "does not fit" in line]
    assert len(warnings) == 1 and "output.work_size 4096x4096" in warnings[0] and f"{w}x{h}" in warnings[0], out.stderr
