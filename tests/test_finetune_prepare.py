"""`masquerade data prepare`: a real folder of photos -> the trainer's data set, with what was dropped."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from engine.training import prepare
from engine.training.gan import load_folder

from .conftest import masquerade
from .photos import photo, photo_folder


def portrait_red_over_blue() -> Image.Image:
    """Displayed upright: red top half, blue bottom half (72 x 96)."""
    arr = np.zeros((96, 72, 3), np.uint8)
    arr[:48] = (220, 30, 30)
    arr[48:] = (30, 30, 220)
    return Image.fromarray(arr)


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "photos"
    distinct = photo_folder(folder, 6)  # jpg, png, webp in three sub-folders
    # a phone photo: pixels stored sideways, EXIF orientation 6 says "rotate 90 degrees clockwise to show"
    exif = Image.Exif()
    exif[0x0112] = 6
    portrait_red_over_blue().transpose(Image.Transpose.ROTATE_90).save(folder / "phone.jpg", exif=exif, quality=95)
    shutil.copy(distinct[0], folder / "roll0" / "zz-copy.jpg")  # byte-identical
    photo(1, (96, 72)).resize((192, 144), Image.LANCZOS).save(folder / "photo001-big.jpg", quality=70)  # near
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    photo(9, (20, 20)).save(folder / "thumb.png")  # too small for 64 px
    (folder / "notes.txt").write_text("not a photo")
    return folder


def test_prepare_keeps_distinct_photos_and_says_what_it_dropped(photos, tmp_path):
    out = tmp_path / "set"
    manifest = prepare.prepare(photos, out, size=64)
    assert manifest.counts() == {"kept": 7, "duplicates": 2, "unreadable": 1, "too_small": 1}
    dupes = {d["source"]: d for d in manifest.duplicates}
    assert dupes["roll0/zz-copy.jpg"]["kind"] == "exact"
    assert dupes["roll0/zz-copy.jpg"]["duplicate_of"] == "roll0/photo000.jpg"
    near = dupes["roll1/photo001.png"]  # the bigger re-save sorts first and is kept
    assert near["kind"] == "near" and near["duplicate_of"] == "photo001-big.jpg" and near["distance"] <= 10
    assert manifest.unreadable[0]["source"] == "broken.jpg"
    assert manifest.too_small == [{"source": "thumb.png", "width": 20, "height": 20}]
    assert "only 7 images" in manifest.warning() and "ada" in manifest.warning()

    written = sorted(out.glob("*.png"))
    assert len(written) == 7
    assert all(Image.open(p).size == (64, 64) and Image.open(p).mode == "RGB" for p in written)
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["counts"]["kept"] == 7 and len(on_disk["kept"]) == 7
    assert load_folder(out, 64).shape == (7, 3, 64, 64)  # what the trainer reads

    phone = next(out.glob("*_phone.png"))  # upright: red on top, blue at the bottom
    arr = np.asarray(Image.open(phone)).astype(int)
    assert arr[2, :, 0].mean() > 180 and arr[2, :, 2].mean() < 80
    assert arr[-3, :, 2].mean() > 180 and arr[-3, :, 0].mean() < 80


def test_phash_tells_recompressed_copies_from_different_photos(tmp_path):
    a = photo(3)
    a.resize((48, 36), Image.LANCZOS).save(tmp_path / "a.jpg", quality=40)
    small_and_recompressed = Image.open(tmp_path / "a.jpg")
    assert prepare.hamming(prepare.phash(a), prepare.phash(small_and_recompressed)) <= 10
    others = [prepare.hamming(prepare.phash(a), prepare.phash(photo(s))) for s in range(4, 24)]
    assert min(others) > 10


def test_smart_crop_finds_the_detail_and_pad_keeps_everything():
    arr = np.full((60, 180, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    arr[:, 10:60] = rng.integers(0, 256, (60, 50, 3))  # all the detail at the left
    wide = Image.fromarray(arr)
    smart = np.asarray(prepare.square(wide, "smart"))
    centre = np.asarray(prepare.square(wide, "centre"))
    assert smart.shape == centre.shape == (60, 60, 3)
    assert smart.std() > 3 * centre.std()
    padded = prepare.square(wide, "pad")
    assert padded.size == (180, 180)


def test_cli_prepare_names_unreadable_files_and_warns(photos, tmp_path):
    out = tmp_path / "set"
    result = masquerade("data", "prepare", photos, "-o", out, "--size", "32", "--crop", "smart")
    assert result.returncode == 0, result.stderr
    assert "kept 7, dropped 2 duplicates, 1 unreadable, 1 smaller than 32 px" in result.stdout
    assert "unreadable: broken.jpg" in result.stdout
    assert "warning: only 7 images" in result.stdout
    again = masquerade("data", "prepare", photos, "-o", out, "--size", "32")
    assert again.returncode == 2 and "already holds images" in again.stderr
