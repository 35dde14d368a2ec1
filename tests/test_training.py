"""The trainer that made the default model: data set, steps, snapshots that play, resume."""

import numpy as np
import pytest
import torch
from PIL import Image

from engine.generators import checkpoint
from engine.training import emoji
from engine.training.augment import diff_augment
from engine.training.gan import TrainConfig, Trainer


@pytest.fixture(scope="module")
def emoji16(tmp_path_factory):
    if not emoji.FONT.is_file():
        pytest.skip(f"{emoji.FONT} is missing (setup.sh installs fonts-noto-color-emoji)")
    folder = tmp_path_factory.mktemp("emoji16")
    count = emoji.build(folder, size=16)
    return folder, count


def test_emoji_data_set_has_every_glyph_on_the_dark_background(emoji16):
    folder, count = emoji16
    assert count > 3000
    im = np.asarray(Image.open(sorted(folder.iterdir())[100]))
    assert im.shape == (16, 16, 3)
    assert tuple(im[0, 0]) == emoji.BACKGROUND  # the margin
    assert im.std() > 10  # a glyph in the middle


def test_training_moves_snapshots_play_and_resume(emoji16, tmp_path):
    folder, _ = emoji16
    cfg = TrainConfig(data=str(folder), out=str(tmp_path / "run"), resolution=16, z_dim=16, g_channels=8,
                      d_channels=8, batch=16, steps=4, snapshot_every=2, threads=1, licence="test")
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    last = trainer.run(progress=False)
    assert last.name == "generator-000004.safetensors"
    changed = [k for k, v in trainer.G.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "four steps of training changed nothing"
    assert all(np.isfinite(entry["loss_D"]) and np.isfinite(entry["loss_G"]) for entry in trainer.log)

    generator, card = checkpoint.load(last)  # a snapshot is a model file that plays at once
    assert card.provenance["steps"] == 4 and card.provenance["licence"] == "test"
    assert generator(torch.randn(2, 16)).shape == (2, 3, 16, 16)
    d, d_card = checkpoint.load(tmp_path / "run" / "discriminator-000004.safetensors")
    assert d_card.architecture == "dcgan-discriminator" and d(torch.rand(2, 3, 16, 16)).shape == (2,)
    assert (tmp_path / "run" / "samples-000004.png").is_file()

    resumed = Trainer(TrainConfig(**{**cfg.__dict__, "steps": 6}))
    assert resumed.step == 4
    torch.testing.assert_close(resumed.G_ema.state_dict(), trainer.G_ema.state_dict())
    resumed.run(progress=False)
    assert resumed.step == 6 and len(resumed.log) == 6


def test_diff_augment_is_differentiable_and_keeps_shape():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
