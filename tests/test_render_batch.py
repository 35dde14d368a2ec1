"""Batched generation in the offline render (engine/offline.py, issue 19): `render --batch 4` writes the frames of
`--batch 1` (PNG folders, compared exactly: on the CPU the default show's are bit-identical; the contract is 1/255
per value); a show with a stateful filter renders one frame at a time and says so in the log; every architecture,
and the pipeline under changing controls with its filters on the whole batch (as on CUDA), gives each frame of a
batch within 1/255 of the frame alone."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from engine import filters, generators, offline
from engine import show as shows
from engine.frame import Tick
from engine.pipeline import Pipeline
from engine.show import StyleSection
from engine.style import Styler

from .conftest import DEFAULT_SHOW, ROOT, masquerade
from .test_contracts import DISCRIMINATORS, TINY


def pngs(folder):
    files = sorted(folder.glob("*.png"))
    return [np.asarray(Image.open(f).convert("RGB")).astype(np.int16) for f in files]


def test_batch_4_render_is_within_one_level_of_batch_1(tmp_path):
    # 10 frames: batches of 4, 4 and 2. At 256x256 (the default show's work size) the compositor copies the
    # frame as it is, so the PNGs hold the generated values themselves. On the CPU the filters run frame by frame
    # inside the batch and the DCGAN is exact at batch 4: the same bits.
    runs = {}
    for batch in (1, 4):
        out = tmp_path / f"batch{batch}"
        r = masquerade("render", DEFAULT_SHOW, "-o", out, "-q", "--seconds", 1, "--fps", 10, "--size", "256x256",
                       "--batch", batch)
        assert r.returncode == 0, r.stderr
        assert f"generating {batch} frame{'s' if batch > 1 else ''} at a time (asked)" in r.stderr
        runs[batch] = pngs(out)
    assert len(runs[1]) == len(runs[4]) == 10
    for i, (a, b) in enumerate(zip(runs[1], runs[4], strict=True)):
        assert np.abs(a - b).max() <= 1, f"frame {i} differs by more than 1/255"
        if not torch.cuda.is_available():
            assert np.array_equal(a, b), f"frame {i}: not the bits of batch 1 on the CPU"
    assert len({f.tobytes() for f in runs[4]}) == 10  # the frames move: the batch did not repeat one picture


def test_a_stateful_filter_renders_one_frame_at_a_time_and_says_so(tmp_path):
    show = ROOT / "shows" / "dream-feedback.toml"  # deepdream in feedback mode: each frame carries the last one
    runs = {}
    for batch in (1, 4):
        out = tmp_path / f"batch{batch}"
        r = masquerade("render", show, "-o", out, "-q", "--seconds", 0.3, "--fps", 10, "--size", "64x64",
                       "--batch", batch)
        assert r.returncode == 0, r.stderr
        runs[batch] = pngs(out)
    assert "generating one frame at a time, not 4:" in r.stderr and "deepdream filter is stateful" in r.stderr
    assert len(runs[4]) == 3
    for a, b in zip(runs[1], runs[4], strict=True):
        assert np.array_equal(a, b)  # batch 1 in fact: the very same frames


def test_the_batch_is_chosen_and_bad_values_are_one_line(tmp_path, caplog):
    show = shows.load(DEFAULT_SHOW)
    pipeline = Pipeline(show, "cpu")
    with caplog.at_level(logging.INFO, logger="masquerade"):
        assert offline.choose_batch(pipeline) == offline.AUTO_BATCH
    assert f"generating {offline.AUTO_BATCH} frames at a time (chosen on cpu)" in caplog.text
    pipeline.mirror = lambda t: None  # mirror mode reads the camera frame by frame
    assert offline.choose_batch(pipeline, 4) == 1
    r = masquerade("render", DEFAULT_SHOW, "-o", tmp_path / "x", "--seconds", 0.1, "--batch", 0)
    assert r.returncode == 2 and "--batch" in r.stderr and "Traceback" not in r.stderr


def test_filters_declare_whether_they_keep_state():
    show = shows.load(DEFAULT_SHOW)
    pipeline = Pipeline(show, "cpu")
    assert [filters.stateful(f) for f in pipeline.filters] == [False, False]  # superres, grade
    assert pipeline.batch_blocker() is None
    assert filters.stateful(object())  # a filter that does not say counts as stateful
    for name in ("deepdream", "style", "cyclegan", "pix2pix"):
        assert filters.get(name).stateful is True, name
    for name in ("superres", "opencv-superres", "grade", "colour-transfer"):
        assert filters.get(name).stateful is False, name


@pytest.mark.parametrize("name", sorted(set(TINY) - DISCRIMINATORS))
def test_every_architecture_draws_a_batch_as_its_frames_one_by_one(name):
    torch.manual_seed(0)
    g = generators.create(name, **TINY[name]).eval()
    c_dim = getattr(g, "c_dim", 0)
    styler = Styler(g, StyleSection(class_label=1 if c_dim else -1), "<test>")
    z = torch.randn(4, g.z_dim)
    with torch.no_grad():
        batch = styler(z, 0.7, label=1.5 if c_dim else None)  # a class between two: the class vector is shared
        alone = torch.cat([styler(z[i:i + 1], 0.7, label=1.5 if c_dim else None) for i in range(4)])
    assert batch.shape == alone.shape == (4, 3, g.resolution, g.resolution)
    quantised = [(x * 255).round() for x in (batch, alone)]
    assert (quantised[0] - quantised[1]).abs().max() <= 1


def test_generate_batch_follows_controls_that_change_inside_a_batch():
    show = shows.load(DEFAULT_SHOW)
    one, many = Pipeline(show, "cpu"), Pipeline(show, "cpu")
    assert not many.batch_filters  # the CPU's choice: filters frame by frame; here the whole batch, as on CUDA
    many.batch_filters = True
    for p in (one, many):  # a fader moves during the batch (it glides: every frame its own truncation), then a grade
        p.controls.bus.post("osc:/masq/walk/truncation", 0.3, at=0.25)
        p.controls.bus.post("osc:/masq/filter/grade/exposure", 1.0, at=0.45)
    ticks = [Tick(i, i / 10) for i in range(8)]
    alone = [one.generate(t) for t in ticks]
    batched = many.generate_batch(ticks)
    assert [f.tick for f, _ in batched] == ticks
    for a, (b, snap) in zip(alone, batched, strict=True):
        assert a.rgb.shape == b.rgb.shape == (256, 256, 3)
        assert np.abs(a.rgb.astype(np.int16) - b.rgb).max() <= 1
        assert snap is not None
    assert batched[0][1]["walk.truncation"] != batched[-1][1]["walk.truncation"]
    assert batched[0][1]["filter.grade.exposure"] != batched[-1][1]["filter.grade.exposure"]
