"""Show files: every shipped show loads, and every mistake is named precisely."""

from pathlib import Path

import pytest
import torch

from engine import show as shows
from engine.show import ShowError, parse_size

from .conftest import ROOT


@pytest.mark.parametrize("path", sorted((ROOT / "shows").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_show_loads_and_its_model_exists(path):
    show = shows.load(path)
    assert show.model_path.is_file(), f"{path.name} names a model that is not shipped: {show.model_path}"


def write(tmp_path, text) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, expected", [
    ("[walk]\nspeeed = 2\n", "unknown key walk.speeed for kind 'keyframes'"),
    ("[walk]\nspeed = 'fast'\n", "option speed must be a finite number"),
    ("[walk]\nkeyframes = 1\n", "option keyframes must be >= 2"),
    ("[walk]\nkind = 'spiral'\n", "walk.kind must be one of"),
    ("[walk]\nkind = 'drift'\nkeyframes = 3\n", "unknown key walk.keyframes for kind 'drift'"),
    ("[walk]\ntruncation = -1\n", "walk.truncation"),
    ("[output]\nsize = [0, 720]\n", "output.size"),
    ("[output]\nfit = 'stretch'\n", "fit must be"),
    ("[output]\nbackground = [2, 0, 0]\n", "background"),
    ("colour = 'red'\n", "unknown key 'colour'"),
    ("walk = 3\n", "[walk] must be a table"),
    ("[walk\nspeed = 1\n", "line 1"),
])
def test_errors_name_the_file_and_the_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ShowError) as err:
        shows.load(path)
    message = str(err.value)
    assert str(path) in message
    assert expected in message


def test_missing_show_file_is_named(tmp_path):
    with pytest.raises(ShowError, match="nope.toml: no such show file"):
        shows.load(tmp_path / "nope.toml")


def test_model_path_relative_to_show_else_project(tmp_path):
    local = tmp_path / "mine.safetensors"
    local.write_bytes(b"")
    show = shows.load(write(tmp_path, "[model]\npath = 'mine.safetensors'\n"))
    assert show.model_path == local
    show = shows.load(write(tmp_path, "[model]\npath = 'assets/models/emoji64.safetensors'\n"))
    assert show.model_path == ROOT / "assets" / "models" / "emoji64.safetensors"


@pytest.mark.parametrize("text", ["0x0", "abc", "1920", "-5x10", "1920x1080x3", "99999x10"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(ShowError, match="size"):
        parse_size(text)


def test_good_size():
    assert parse_size("1920x1080") == (1920, 1080)
    assert parse_size("640X360") == (640, 360)


@pytest.mark.parametrize("kind", __import__("engine.walks", fromlist=["names"]).names())
def test_every_walk_kind_plays_in_a_show(tmp_path, kind):
    from engine.frame import Tick
    from engine.pipeline import Pipeline

    path = write(tmp_path, f'[walk]\nkind = "{kind}"\nseed = 3\n')
    pipeline = Pipeline(shows.load(path), "cpu")
    a, b = pipeline.generate(Tick(0, 0.0)).image, pipeline.generate(Tick(1, 7.3)).image
    assert a.shape == (1, 3, 64, 64) and not torch.equal(a, b)
