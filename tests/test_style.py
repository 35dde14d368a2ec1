"""[style] and foreign checkpoints in shows: StyleGAN models play with the same walk controls."""

import pytest
import torch

from engine import show as shows
from engine.frame import Tick
from engine.pipeline import Pipeline
from engine.show import ShowError

from .conftest import DEFAULT_MODEL, ROOT, masquerade

DATA = ROOT / "tests" / "data"
COND = DATA / "stylegan2" / "cond3_resnet16.safetensors"  # NVlabs StyleGAN2, 3 classes, 16 px
UNCOND = DATA / "stylegan2" / "uncond_skip32.safetensors"
ROSINALITY = DATA / "rosinality" / "small64.pt"  # a rosinality checkpoint as its train.py writes it


def pipeline(tmp_path, model, style="", name="show.toml"):
    path = tmp_path / name
    path.write_text(f'[model]\npath = "{model}"\n[walk]\ntruncation = 0.7\n[style]\n{style}')
    return Pipeline(shows.load(path), "cpu")


def frame(p, t=0.4):
    return p.generate(Tick(0, t)).image


def test_class_label_changes_the_picture_and_is_required(tmp_path):
    a = frame(pipeline(tmp_path, COND, "class_label = 0\n"))
    b = frame(pipeline(tmp_path, COND, "class_label = 2\n"))
    assert a.shape == (1, 3, 16, 16) and (a - b).abs().max() > 1e-3
    with pytest.raises(ShowError, match="conditional on 3 classes"):
        pipeline(tmp_path, COND)
    with pytest.raises(ShowError, match="class_label must be 0..2"):
        pipeline(tmp_path, COND, "class_label = 3\n")


def test_style_mixing_replaces_the_chosen_layers(tmp_path):
    plain = pipeline(tmp_path, UNCOND)
    fine = pipeline(tmp_path, UNCOND, 'mix_seed = 7\nmix_layers = "fine"\n')
    coarse = pipeline(tmp_path, UNCOND, 'mix_seed = 7\nmix_layers = "coarse"\n')
    p, f, c = frame(plain), frame(fine), frame(coarse)
    assert (p - f).abs().mean() > 1e-4 and (p - c).abs().mean() > 1e-4
    # the mix is fixed: at two show times the mixed layers are the same, the walk moves the rest
    g = fine.generator
    z = fine.walk.step(Tick(0, 0.4))
    ws = g.mapping(z, None, truncation_psi=0.7)
    ws2 = g.mapping(fine.styler.mix, None, truncation_psi=0.7)
    lo, hi = fine.styler.mix_range
    expected = g.render(torch.cat([ws[:, :lo], ws2[:, lo:hi], ws[:, hi:]], dim=1))
    torch.testing.assert_close(f, expected)
    assert hi == g.num_ws and lo > 0  # "fine" is the last layers


def test_noise_mode_none_differs_from_const(tmp_path):
    const, none = frame(pipeline(tmp_path, UNCOND)), frame(pipeline(tmp_path, UNCOND, 'noise_mode = "none"\n'))
    assert (const - none).abs().max() > 0


def test_dcgan_refuses_style_layers(tmp_path):
    with pytest.raises(ShowError, match="style.mix_seed: this model .dcgan. has no style layers"):
        pipeline(tmp_path, DEFAULT_MODEL, "mix_seed = 3\n")


def test_random_noise_is_refused_for_repeatable_frames(tmp_path):
    with pytest.raises(ShowError, match="noise_mode"):
        pipeline(tmp_path, UNCOND, 'noise_mode = "random"\n')


def test_a_foreign_checkpoint_plays_directly_and_equals_its_import(tmp_path):
    direct = pipeline(tmp_path, ROSINALITY)
    r = masquerade("models", "import", ROSINALITY, "-o", tmp_path / "small64.safetensors")
    assert r.returncode == 0, r.stderr
    converted = pipeline(tmp_path, tmp_path / "small64.safetensors", name="converted.toml")
    torch.testing.assert_close(frame(direct), frame(converted))
    assert direct.card.provenance["source_format"] and frame(direct).shape == (1, 3, 64, 64)


def test_stylegan_show_renders_through_the_cli(tmp_path):
    show = tmp_path / "sg.toml"
    show.write_text(f'[model]\npath = "{UNCOND}"\n[output]\nsize = [64, 64]\n')
    r = masquerade("render", show, "-o", tmp_path / "frames", "--seconds", 0.2, "--fps", 10)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "frames").iterdir())) == 2


def test_noise_strength_scales_the_model_noise(tmp_path):
    none = frame(pipeline(tmp_path, UNCOND, 'noise_mode = "none"\n'))
    zero = frame(pipeline(tmp_path, UNCOND, "noise_strength = 0.0\n"))
    torch.testing.assert_close(zero, none)  # no noise at all
    one, double = frame(pipeline(tmp_path, UNCOND)), frame(pipeline(tmp_path, UNCOND, "noise_strength = 2.0\n"))
    assert (double - none).abs().mean() > (one - none).abs().mean() > 0
    with pytest.raises(ShowError, match="style.noise_strength: this model .dcgan. has no noise inputs"):
        pipeline(tmp_path, DEFAULT_MODEL, "noise_strength = 0.5\n")


def test_mixed_layers_follow_a_live_truncation_change(tmp_path):
    p = pipeline(tmp_path, UNCOND, 'mix_seed = 7\nmix_layers = "middle"\n')
    g, styler = p.generator, p.styler
    z = p.walk.step(Tick(0, 0.4))
    lo, hi = styler.mix_range
    for psi in (0.7, 0.3, 0.7):  # as /masq/walk/truncation moves during a set
        ws = g.mapping(z, None, truncation_psi=psi)
        ws2 = g.mapping(styler.mix, None, truncation_psi=psi)
        expected = g.render(torch.cat([ws[:, :lo], ws2[:, lo:hi], ws[:, hi:]], dim=1))
        torch.testing.assert_close(styler(z, psi), expected)
