"""The `masquerade` command as a user meets it: one-line errors with exit status 2, and the model list."""

import numpy as np
import pytest
from PIL import Image

from .conftest import DEFAULT_MODEL, DEFAULT_SHOW, ROOT, masquerade


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_show(tmp_path):
    assert_clean_error(masquerade("run", tmp_path / "none.toml", "--headless"), "none.toml", "no such show file")


def test_malformed_show(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[walk]\nspeed = = 3\n")
    assert_clean_error(masquerade("render", bad, "-o", tmp_path / "x.mp4"), "bad.toml", "line 2")


def test_unknown_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[output]\nwidth = 3\n")
    assert_clean_error(masquerade("run", bad, "--headless", "--frames", 1), "bad.toml", "output.width")


def test_missing_model(tmp_path):
    bad = tmp_path / "show.toml"
    bad.write_text("[model]\npath = 'missing.safetensors'\n")
    assert_clean_error(masquerade("run", bad, "--headless", "--frames", 1), "missing.safetensors",
                       "no such model file")


@pytest.mark.parametrize("size", ["0x0", "abc", "12x"])
def test_bad_size(size, tmp_path):
    result = masquerade("render", DEFAULT_SHOW, "-o", tmp_path / "x.mp4", "--size", size)
    assert_clean_error(result, "--size", "WIDTHxHEIGHT", repr(size))


def test_models_list_and_info():
    listing = masquerade("models", "list")
    assert listing.returncode == 0, listing.stderr
    assert "assets/models/emoji64.safetensors" in listing.stdout and "dcgan" in listing.stdout
    assert "emoji64-discriminator.safetensors" in listing.stdout
    assert "sr-emoji-x4.safetensors  superres-compact  x4  " in listing.stdout and "?x?" not in listing.stdout
    info = masquerade("models", "info", DEFAULT_MODEL)
    assert info.returncode == 0, info.stderr
    for fragment in ("architecture  dcgan", "resolution    64", "z_dim         128", "Noto Color Emoji"):
        assert fragment in info.stdout


def test_models_info_on_a_broken_file(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a model")
    assert_clean_error(masquerade("models", "info", bad), "broken.safetensors")


def test_unreachable_display_is_named_not_hidden():
    """SDL would quietly fall back to an invisible offscreen window; Masquerade says so instead."""
    import os

    env = {**os.environ, "DISPLAY": ":4242"}
    result = masquerade("run", DEFAULT_SHOW, env=env, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no usable display (DISPLAY=:4242)" in result.stderr


def test_display_that_does_not_exist(xvfb):
    result = masquerade("run", DEFAULT_SHOW, "--display", 5, timeout=60)
    assert result.returncode == 2
    assert "--display 5: this machine has 1 display(s)" in result.stderr


def test_commands_that_need_no_model_start_without_importing_torch():
    """`masquerade --help`, `weights list`, `kiosk --check` and the like answer at once: building the command
    parser must not import torch (5 s of a 2-core machine's time for every call, before anything happens)."""
    import subprocess
    import sys

    code = ("import sys, engine.cli\n"
            "try:\n    engine.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy', 'cv2', 'moderngl'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-500:] + out.stderr[-500:]


def test_models_sheet_fills_a_screen_at_the_models_own_pixels(tmp_path):
    """`models sheet --size 1920x1080`: as many 64 px samples as fit, walks in the last rows, centred on black."""
    out = tmp_path / "sheet.png"
    r = masquerade("models", "sheet", DEFAULT_MODEL, "--size", "1920x1080", "-o", out)
    assert r.returncode == 0, r.stderr
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert sheet.shape == (1080, 1920, 3)
    assert (sheet[:28] == 0).all() and (sheet[-28:] == 0).all()  # 16 rows of 64 px: 1024 of 1080, centred
    tiles = sheet[28:28 + 64 * 16].reshape(16, 64, 30, 64, 3).transpose(0, 2, 1, 3, 4).reshape(480, -1)
    assert len({t.tobytes() for t in tiles[:13 * 30]}) == 13 * 30  # every sample its own picture
    walk = tiles[13 * 30:14 * 30].astype(int)
    steps = np.abs(np.diff(walk, axis=0)).mean(axis=1)
    assert steps.max() < np.abs(walk[0] - walk[-1]).mean()  # a walk moves in steps, not jumps
    assert_clean_error(masquerade("models", "sheet", DEFAULT_MODEL, "--size", "100x100", "-o", out), "--size 100x100",
                       "too few 64 px tiles")


@pytest.mark.parametrize("name, fragments", [
    ("sr-emoji-x4", ("architecture  superres-compact", "scale         4", 'kind = "superres"')),
    ("style-stained-glass", ("architecture  style-transformer", 'kind = "style"')),
    ("emoji64-discriminator", ("architecture  dcgan-discriminator", "masquerade train --from")),
])
def test_models_info_describes_the_shipped_filter_and_discriminator_files(name, fragments):
    """Every file in assets/models/ answers `models info` with what it is and how a show or the trainer uses it."""
    path = ROOT / "assets" / "models" / f"{name}.safetensors"
    info = masquerade("models", "info", path)
    assert info.returncode == 0, info.stderr
    for fragment in fragments + ("parameters", str(path)):
        assert fragment in info.stdout


def test_a_super_resolution_file_as_a_show_model_says_where_it_belongs(tmp_path):
    model = ROOT / "assets" / "models" / "sr-emoji-x4.safetensors"
    show = tmp_path / "show.toml"
    show.write_text(f'[model]\npath = "{model}"\n')
    result = masquerade("render", show, "-o", tmp_path / "x.mp4", "--seconds", "0.1", "-q")
    assert_clean_error(result, str(model), "super-resolution filter", "not a generator")
    assert not (tmp_path / "x.mp4").exists()
