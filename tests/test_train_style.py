"""`masquerade train-style`: a style trained from a user's own picture (a procedural one drawn here) plays
as the `style` filter and moves frames toward the picture's colours; bad pictures are refused in one line;
Ctrl-C leaves a whole file or none."""

import os
import re
import signal
import struct
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from engine import show as shows
from engine.cli import main
from engine.filters.style import StyleTransfer
from engine.frame import Tick
from engine.generators import checkpoint
from engine.pipeline import Pipeline
from engine.training.style_image import show_frames

from .conftest import DEFAULT_MODEL, ROOT, until

SIZE, STEPS = 64, 40
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def stripes(path, size=160):
    """A user's picture: diagonal stripes of red, orange and yellow with dark seams, nothing like an emoji frame."""
    image = Image.new("RGB", (size, size))
    colours = [(220, 40, 30), (250, 140, 20), (250, 220, 60)]
    image.putdata([colours[((x + y) // 12) % 3] if (x + y) % 12 > 1 else (40, 10, 10)
                   for y in range(size) for x in range(size)])
    image.save(path)
    return path


def train_style(*args, **popen):
    command = [sys.executable, "-m", "engine.cli", "train-style", "--threads", "1", *map(str, args)]
    if popen:
        return subprocess.Popen(command, cwd=ROOT, env=ENV, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                                **popen)
    return subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("style")
    picture = stripes(folder / "my picture.png")
    out = folder / "my-style.safetensors"
    r = train_style("--image", picture, "-o", out, "--steps", STEPS, "--size", SIZE)
    assert r.returncode == 0, r.stderr
    return folder, picture, out, r


def colour_stats(image: torch.Tensor) -> torch.Tensor:
    """Mean and standard deviation of each channel: [6]."""
    flat = image.reshape(image.shape[0], 3, -1).transpose(0, 1).reshape(3, -1)
    return torch.cat([flat.mean(1), flat.std(1)])


def test_the_trained_style_loads_in_the_filter_and_moves_frames_toward_the_picture(trained):
    folder, picture, out, r = trained
    assert "wrote" in r.stdout and str(out) in r.stdout
    card = checkpoint.read_card(out)
    assert card.architecture == "style-transformer" and card.provenance["steps"] == STEPS
    frames = show_frames(6, SIZE, seed=99)  # what the filter sees in the default show, not trained on
    styled = StyleTransfer(out)(frames)
    assert styled.shape == frames.shape
    with Image.open(picture) as im:
        target = colour_stats(torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)[None]
                              .float() / 255)
    before = (colour_stats(frames) - target).norm().item()
    after = (colour_stats(styled) - target).norm().item()
    assert after < 0.7 * before, f"colour statistics: {before:.3f} from the picture unstyled, {after:.3f} styled"


def test_preview_sheet_and_card_lie_beside_the_model(trained):
    folder, picture, out, _ = trained
    sheet = folder / "my-style-sheet.png"
    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.size == (5 * SIZE, 2 * SIZE)  # style + 4 frames; frames over styled
        pixels = torch.from_numpy(np.array(im.convert("RGB"))).float()
    top, bottom = pixels[:SIZE, SIZE:], pixels[SIZE:, SIZE:]
    assert (top - bottom).abs().mean() > 5  # the styled row is not the content row
    card = (folder / "my-style.md").read_text()
    assert "my picture.png" in card and f"| steps | {STEPS} |" in card and "masquerade train-style" in card
    assert "minutes" in card
    assert sorted(p.name for p in folder.iterdir()) == ["my picture.png", "my-style-sheet.png", "my-style.md",
                                                        "my-style.safetensors"]


def test_the_style_plays_in_a_show_after_the_super_resolution(trained, tmp_path):
    _, _, out, _ = trained
    text = (f'[model]\npath = "{DEFAULT_MODEL}"\n[walk]\nseed = 3\n[[filters]]\nkind = "superres"\n'
            f'[[filters]]\nkind = "style"\npath = "{out}"\n')
    (tmp_path / "styled.toml").write_text(text)
    (tmp_path / "plain.toml").write_text(text.split('[[filters]]\nkind = "style"')[0])
    styled = Pipeline(shows.load(tmp_path / "styled.toml"), "cpu")
    plain = Pipeline(shows.load(tmp_path / "plain.toml"), "cpu")
    assert styled.path.describe().endswith("style 256x256")
    a, b = styled.generate(Tick(0, 0.5)).image, plain.generate(Tick(0, 0.5)).image
    assert a.shape == b.shape == (1, 3, 256, 256) and (a - b).abs().mean() > 0.02


def header_only_png(path, width, height):
    """A PNG that claims width x height (its pixels are not there): a picture too large to decode."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("case", ["missing", "not an image", "4x4", "9000x9000"])
def test_bad_pictures_exit_2_in_one_line_naming_the_file(tmp_path, capsys, case):
    picture = tmp_path / f"style {case}.png"
    if case == "not an image":
        picture.write_text("these are words, not pixels\n")
    elif case == "4x4":
        Image.new("RGB", (4, 4), (200, 30, 30)).save(picture)
    elif case == "9000x9000":
        header_only_png(picture, 9000, 9000)
    before = set(tmp_path.iterdir())
    out = tmp_path / "out.safetensors"
    assert main(["train-style", "--image", str(picture), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(picture) in err, err
    assert set(tmp_path.iterdir()) == before  # nothing written


def test_an_existing_output_is_kept_without_force(trained, capsys):
    folder, picture, out, _ = trained
    stamp = out.stat().st_mtime_ns
    assert main(["train-style", "--image", str(picture), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and str(out) in err and out.stat().st_mtime_ns == stamp


def test_ctrl_c_leaves_a_whole_file_or_none(tmp_path):
    picture = stripes(tmp_path / "stripes.png")
    out = tmp_path / "interrupted.safetensors"
    proc = train_style("--image", picture, "-o", out, "--steps", 100_000, "--size", SIZE, bufsize=0)
    err = bytearray()

    def read():
        for chunk in iter(lambda: proc.stderr.read(256), b""):
            err.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        until(lambda: re.search(rb"step=[1-9]", err) or proc.poll() is not None, 60, "training progress")
        assert proc.poll() is None, err.decode()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    assert code == 130, err.decode()
    assert not list(tmp_path.glob(".*.part"))
    if out.exists():  # saved the last step's weights: the whole file, and it plays
        card = checkpoint.read_card(out)
        assert card.provenance["interrupted"] is True and card.provenance["steps"] >= 1
        frame = torch.rand(1, 3, 32, 32)
        assert StyleTransfer(out)(frame).shape == frame.shape
        assert b"interrupted" in err
