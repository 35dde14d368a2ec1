"""`[[filters]]` in a show: chained after the generator, on the frame path live and offline."""

import numpy as np
import pytest
import torch

from engine import show as shows
from engine.filters.superres import upscale
from engine.frame import Tick
from engine.pipeline import Pipeline
from engine.show import ShowError

from .conftest import DEFAULT_MODEL, FIXTURES, masquerade

ANIME = FIXTURES / "weights" / "realesr-animevideov3.pth"


def write_show(folder, filters_toml: str):
    folder.mkdir(exist_ok=True)
    path = folder / "show.toml"
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[output]\nsize = [256, 256]\n{filters_toml}')
    return path


@pytest.fixture
def anime():
    if not ANIME.is_file():
        pytest.skip(f"{ANIME} is absent (the shared fixtures sit beside the checkout)")
    return ANIME


def test_superres_stage_upscales_every_frame(tmp_path, anime):
    show = shows.load(write_show(tmp_path, f'[[filters]]\nkind = "superres"\npath = "{anime}"\n'))
    plain = Pipeline(shows.load(write_show(tmp_path / "plain", "")), "cpu")
    pipeline = Pipeline(show, "cpu")
    assert pipeline.resolution == 256
    tick = Tick(3, 0.1)
    frame = pipeline.generate(tick)
    assert frame.image.shape == (1, 3, 256, 256) and frame.rgb.shape == (256, 256, 3)
    expected = upscale(plain.generate(tick).image, pipeline.filters[0].net)
    torch.testing.assert_close(frame.image, expected)
    assert "superres" in pipeline.times.mean_ms


def test_superres_show_renders_offline(tmp_path, anime):
    show = write_show(tmp_path, f'[[filters]]\nkind = "superres"\npath = "{anime}"\ntile = 32\n')
    out = tmp_path / "frames"
    r = masquerade("render", show, "-o", out, "--seconds", 0.1, "--fps", 20)
    assert r.returncode == 0, r.stderr
    frames = sorted(out.iterdir())
    assert len(frames) == 2


def test_missing_weights_are_named_with_the_row(tmp_path):
    show = shows.load(write_show(tmp_path, '[[filters]]\nkind = "superres"\npath = "gone.pth"\n'))
    with pytest.raises(ShowError, match=r"\[\[filters\]\] #1 \(superres\): weights file .*gone.pth is missing"):
        Pipeline(show, "cpu")


def test_unknown_filter_and_bad_argument_name_the_row(tmp_path, anime):
    with pytest.raises(ShowError, match=r"\[\[filters\]\] #1: kind must be one of"):
        shows.load(write_show(tmp_path, '[[filters]]\nkind = "sepia"\n'))
    show = shows.load(write_show(tmp_path, f'[[filters]]\nkind = "superres"\npath = "{anime}"\nstrength = 2\n'))
    with pytest.raises(ShowError, match=r"#1 \(superres\): .*strength"):
        Pipeline(show, "cpu")


def test_wrong_weights_say_what_the_file_holds(tmp_path):
    dcgan = FIXTURES / "weights" / "dcgan-mnist-generator.pth"
    if not dcgan.is_file():
        pytest.skip(f"{dcgan} is absent")
    show = shows.load(write_show(tmp_path, f'[[filters]]\nkind = "superres"\npath = "{dcgan}"\n'))
    with pytest.raises(ShowError, match="no super-resolution network"):
        Pipeline(show, "cpu")


def test_cli_reports_filter_errors_in_one_line(tmp_path):
    show = write_show(tmp_path, '[[filters]]\nkind = "superres"\npath = "gone.pth"\n')
    r = masquerade("render", show, "-o", tmp_path / "x", "--seconds", 0.1)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert np.char.count(r.stderr.strip(), "\n") == 0
