"""Offline renders: real H.264 files decoded back, PNG sequences, determinism, and agreement with
what the live path shows at the same show times."""

import numpy as np
import pytest
from PIL import Image

from engine.sinks.video import read_frames

from .conftest import DEFAULT_SHOW, masquerade


@pytest.fixture(scope="module")
def piece(tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "piece.mp4"
    result = masquerade("render", DEFAULT_SHOW, "-o", out, "--seconds", 2, "--fps", 12, "--size", "320x180")
    assert result.returncode == 0, result.stderr
    return out


def test_mp4_has_every_frame_at_the_asked_size(piece):
    import av

    frames = read_frames(piece)
    assert len(frames) == 24
    assert frames[0].shape == (180, 320, 3)
    with av.open(str(piece)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert float(stream.average_rate) == pytest.approx(12)


def test_consecutive_frames_change_smoothly(piece):
    frames = [f.astype(np.float32) for f in read_frames(piece)]
    steps = [np.abs(a - b).mean() for a, b in zip(frames, frames[1:])]
    mean = float(np.mean(steps))
    assert mean > 0.5, "the walk stood still"
    # smooth: the walk eases in and out of keyframes, but no step is a jump next to the others
    assert max(steps) < 3 * mean, f"a jump between frames: {max(steps):.1f} vs mean {mean:.1f} levels"
    assert np.abs(frames[0] - frames[-1]).mean() > 3 * mean, "frames change, but the picture goes nowhere"
    # the picture is not blank: the model draws something with structure
    assert frames[5][:, 70:250].std() > 10


def test_same_command_twice_gives_identical_frames(piece, tmp_path):
    again = tmp_path / "again.mp4"
    result = masquerade("render", DEFAULT_SHOW, "-o", again, "--seconds", 2, "--fps", 12, "--size", "320x180")
    assert result.returncode == 0, result.stderr
    for a, b in zip(read_frames(piece), read_frames(again), strict=True):
        assert np.array_equal(a, b)


def test_png_render_equals_the_live_headless_frames(tmp_path):
    """The live loop (producer thread, lockstep clock) and the offline render agree pixel for pixel."""
    offline, live = tmp_path / "offline", tmp_path / "live"
    r = masquerade("render", DEFAULT_SHOW, "-o", offline, "--seconds", 1, "--fps", 30, "--size", "256x144")
    assert r.returncode == 0, r.stderr
    r = masquerade("run", DEFAULT_SHOW, "--headless", "--frames", 30, "--out", live, "--size", "256x144")
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in offline.iterdir())
    assert len(names) == 30 and names == sorted(p.name for p in live.iterdir())
    for name in names:
        assert np.array_equal(np.asarray(Image.open(offline / name)), np.asarray(Image.open(live / name))), name


def test_mp4_matches_the_lossless_frames(piece, tmp_path):
    pngs = tmp_path / "pngs"
    r = masquerade("render", DEFAULT_SHOW, "-o", pngs, "--seconds", 2, "--fps", 12, "--size", "320x180")
    assert r.returncode == 0, r.stderr
    for i, decoded in enumerate(read_frames(piece)):
        exact = np.asarray(Image.open(pngs / f"frame_{i:06d}.png")).astype(np.float32)
        assert np.abs(decoded.astype(np.float32) - exact).mean() < 4  # H.264 at crf 18: close, not equal


def test_odd_video_size_is_a_clear_error(tmp_path):
    r = masquerade("render", DEFAULT_SHOW, "-o", tmp_path / "odd.mp4", "--seconds", 0.2, "--size", "321x181")
    assert r.returncode != 0
    assert "even width and height" in r.stderr
