"""Colour filters: Reinhard transfer in CIELAB and grading; pure functions and modules agree, identity
settings change nothing, and the shipped reference picture is the one its code draws."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from engine import filters
from engine.filters import palettes
from engine.filters.colour import (
    SUNSET,
    ColourTransfer,
    Grade,
    grade,
    lab_statistics,
    lab_to_rgb,
    match_statistics,
    read_picture,
    rgb_to_lab,
    transfer,
)

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "assets" / "models" / "emoji64.safetensors"


def smooth_picture(seed: int, size: int = 48, low: float = 0.25, high: float = 0.75) -> torch.Tensor:
    """[1, 3, size, size]: a few random colours blended smoothly, kept inside [low, high]."""
    coarse = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse * (high - low) + low, size=size, mode="bicubic", align_corners=False).clamp(low, high)


@pytest.fixture(scope="module")
def gan_frames():
    from engine.generators import checkpoint

    generator, _ = checkpoint.load(MODEL)
    with torch.no_grad():
        return generator(torch.randn(4, generator.z_dim, generator=torch.Generator().manual_seed(0)))


# -- CIELAB ------------------------------------------------------------------------------------------

def test_lab_known_values_and_round_trip():
    colours = torch.tensor([[1.0, 0, 0], [1, 1, 1], [0, 0, 0], [0.5, 0.5, 0.5]]).T.reshape(1, 3, 1, 4)
    lab = rgb_to_lab(colours)[0, :, 0].T
    expected = torch.tensor([[53.24, 80.09, 67.20], [100, 0, 0], [0, 0, 0], [53.39, 0, 0]])  # CIE tables
    torch.testing.assert_close(lab, expected, atol=0.01, rtol=0)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert (lab_to_rgb(rgb_to_lab(x)) - x).abs().max() < 1e-4


# -- transfer ----------------------------------------------------------------------------------------

def test_statistics_step_matches_the_target_exactly():
    lab = rgb_to_lab(torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(1)))
    mean, std = torch.tensor([40.0, 20, -10]), torch.tensor([15.0, 8, 12])
    out = match_statistics(lab, mean, std).flatten(2)
    torch.testing.assert_close(out.mean(2), mean.expand(2, 3), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.std(2, correction=0), std.expand(2, 3), atol=1e-3, rtol=0)
    half = match_statistics(lab, mean, std, amount=0.5).flatten(2).mean(2)
    torch.testing.assert_close(half, (lab.flatten(2).mean(2) + mean) / 2, atol=1e-3, rtol=0)


def test_after_transfer_the_frame_has_the_references_statistics():
    frame = smooth_picture(seed=2)
    # a reference that is the frame's own colours moved and stretched in CIELAB, still inside sRGB:
    # the transfer can reach it exactly, so it must
    lab = rgb_to_lab(frame)
    m = lab.flatten(2).mean(2)[..., None, None]
    shifted = (lab - m) * torch.tensor([0.8, 1.2, 1.2])[:, None, None] + m + torch.tensor([4.0, 5, -4])[:, None, None]
    reference = lab_to_rgb(shifted)
    assert 0 <= reference.min() and reference.max() <= 1, "the test's reference should stay inside sRGB"
    ref_mean, ref_std = lab_statistics(reference)
    out = transfer(frame, ref_mean[0], ref_std[0])
    out_mean, out_std = lab_statistics(out)
    torch.testing.assert_close(out_mean, ref_mean, atol=0.05, rtol=0)
    torch.testing.assert_close(out_std, ref_std, atol=0.05, rtol=0)
    assert (out - reference).abs().max() < 1e-3  # an affine map in Lab is undone exactly
    assert (lab_statistics(frame)[0] - ref_mean).abs().min() > 3  # and it had somewhere to go
    assert (lab_statistics(frame)[1] - ref_std).abs().min() > 1


def test_shipped_palette_pulls_gan_frames_to_its_statistics(gan_frames):
    ref_mean, ref_std = lab_statistics(read_picture(SUNSET))
    before_mean, before_std = lab_statistics(gan_frames)
    after_mean, after_std = lab_statistics(transfer(gan_frames, ref_mean[0], ref_std[0]))
    # clipping to sRGB leaves a little, but the frames move nearly all the way
    assert ((after_mean - ref_mean).abs() < 0.25 * (before_mean - ref_mean).abs() + 1.5).all()
    assert ((after_std - ref_std).abs() < 0.25 * (before_std - ref_std).abs() + 1.5).all()
    assert (after_mean - ref_mean).abs().mean() < 0.1 * (before_mean - ref_mean).abs().mean()


def test_amount_and_luminance(gan_frames):
    mean, std = lab_statistics(read_picture(SUNSET))
    assert transfer(gan_frames, mean[0], std[0], amount=0) is gan_frames
    kept_lightness = transfer(smooth_picture(3), mean[0], std[0], luminance=0)
    torch.testing.assert_close(lab_statistics(kept_lightness)[0][:, 0], lab_statistics(smooth_picture(3))[0][:, 0],
                               atol=0.3, rtol=0)
    a_b = lab_statistics(kept_lightness)[0][0, 1:]
    assert (a_b - mean[0, 1:]).abs().max() < 1.5


def test_flat_frame_takes_the_reference_mean():
    flat = torch.full((1, 3, 8, 8), 0.4)
    mean, std = torch.tensor([60.0, 10, 20]), torch.tensor([10.0, 5, 5])
    out = transfer(flat, mean, std)
    torch.testing.assert_close(lab_statistics(out)[0][0], mean, atol=0.05, rtol=0)
    assert torch.isfinite(out).all()


def test_transfer_module_agrees_with_the_function(gan_frames):
    module = filters.create("colour-transfer", path=SUNSET, amount=0.7)
    assert module.scale == 1 and set(module.controls) == {"amount", "luminance"}
    mean, std = lab_statistics(read_picture(SUNSET))
    torch.testing.assert_close(module(gan_frames), transfer(gan_frames, mean[0], std[0], 0.7), atol=0, rtol=0)
    torch.testing.assert_close(module(gan_frames, amount=0.2, luminance=0.5),
                               transfer(gan_frames, mean[0], std[0], 0.2, 0.5), atol=0, rtol=0)
    assert module(gan_frames).shape == gan_frames.shape


def test_missing_reference_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.png: no such reference picture"):
        ColourTransfer(tmp_path / "nowhere.png")


# -- grading -----------------------------------------------------------------------------------------

def test_identity_settings_change_nothing(gan_frames):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    for image in (x, gan_frames):
        assert (grade(image) - image).abs().max() <= 1e-6
        assert (Grade()(image) - image).abs().max() <= 1e-6


def test_saturation_zero_is_grey_and_keeps_luma():
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    grey = grade(x, saturation=0)
    assert (grey.max(1).values - grey.min(1).values).max() < 1e-6
    luma = 0.2126 * x[:, 0] + 0.7152 * x[:, 1] + 0.0722 * x[:, 2]
    torch.testing.assert_close(grey[:, 0], luma, atol=1e-6, rtol=0)
    vivid = grade(x, saturation=2)
    assert (vivid.max(1).values - vivid.min(1).values).mean() > (x.max(1).values - x.min(1).values).mean()


def test_each_control_does_what_it_says():
    x = torch.linspace(0, 1, 11).view(1, 1, 1, 11).expand(1, 3, 1, 11).contiguous()
    torch.testing.assert_close(grade(x, exposure=1), (x * 2).clamp(0, 1))
    torch.testing.assert_close(grade(x, gain=0.5), x * 0.5)
    torch.testing.assert_close(grade(x, lift=0.2)[..., 0], torch.full((1, 3, 1), 0.2))  # blacks raised
    torch.testing.assert_close(grade(x, lift=0.2)[..., -1], torch.ones(1, 3, 1))  # whites stay
    assert (grade(x, gamma=2)[..., 1:-1] > x[..., 1:-1]).all()  # brighter mid-tones, same ends
    torch.testing.assert_close(grade(x, contrast=0), torch.full_like(x, 0.5))
    assert grade(x, contrast=2)[..., 3].max() < x[..., 3].max()  # below mid-grey goes darker
    warm = grade(torch.full((1, 3, 1, 1), 0.5), temperature=1).flatten()
    assert warm[0] > warm[1] > warm[2]


def test_grade_module_agrees_with_the_function_and_takes_every_control():
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(6))
    module = filters.create("grade", contrast=1.3, saturation=0.5)
    assert module.scale == 1
    torch.testing.assert_close(module(x), grade(x, contrast=1.3, saturation=0.5), atol=0, rtol=0)
    torch.testing.assert_close(module(x, saturation=1.5, exposure=-0.5),
                               grade(x, contrast=1.3, saturation=1.5, exposure=-0.5), atol=0, rtol=0)
    for name, (default, low, high) in Grade.controls.items():
        assert low <= default <= high
        torch.testing.assert_close(Grade(**{name: high})(x), Grade()(x, **{name: high}), atol=0, rtol=0)
    with pytest.raises(ValueError, match="saturation = 9 is outside 0.0..3.0"):
        Grade(saturation=9)


# -- the shipped reference picture -------------------------------------------------------------------

def test_shipped_palette_is_what_its_code_draws():
    shipped = np.asarray(Image.open(SUNSET).convert("RGB"), dtype=np.int16)
    drawn = np.asarray(palettes.sunset(), dtype=np.int16)
    assert shipped.shape == drawn.shape == (320, 512, 3)
    assert np.abs(shipped - drawn).max() <= 1  # floating point on another machine may round one level off


def test_colour_rows_in_a_show_resolve_their_path_and_run(tmp_path):
    from engine import show as shows
    from engine.frame import Tick
    from engine.pipeline import Pipeline

    palettes.sunset(64, 40).save(tmp_path / "ref.png")  # beside the show: `path` is taken from there
    show = tmp_path / "show.toml"
    show.write_text(f'[model]\npath = "{MODEL}"\n[output]\nsize = [64, 64]\n'
                    '[[filters]]\nkind = "colour-transfer"\npath = "ref.png"\namount = 1.0\n'
                    '[[filters]]\nkind = "grade"\nsaturation = 0.0\n')
    pipeline = Pipeline(shows.load(show), "cpu")
    image = pipeline.generate(Tick(0, 0.0)).image
    assert image.shape == (1, 3, 64, 64)
    assert (image.max(1).values - image.min(1).values).max() < 1e-6  # grey, after the grade
    assert Path(pipeline.filters[0].config["path"]) == tmp_path / "ref.png"
