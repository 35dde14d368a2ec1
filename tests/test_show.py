"""Show files: every shipped show loads, and every mistake is named precisely."""

from pathlib import Path

import pytest

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
    ("[walk]\nspeeed = 2\n", "walk.speeed"),
    ("[walk]\nspeed = 'fast'\n", "walk.speed must be a number"),
    ("[walk]\nkeyframes = 1\n", "walk.keyframes must be at least 2"),
    ("[output]\nsize = [0, 720]\n", "[output] size"),
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
