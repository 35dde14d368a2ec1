"""`masquerade train --arch lightweight-gan`: FastGAN discriminator, hinge loss, DiffAugment; its snapshots are
`lightweight-gan` model files that play in a show, and a second run resumes the step count. Tiny (16 px)."""

import os

import torch

from engine.generators import checkpoint
from engine.training import nets
from engine.training.fastgan_discriminator import Discriminator
from engine.training.gan import TrainConfig, Trainer

from .conftest import masquerade
from .photos import photo


def test_fastgan_discriminator_shapes():
    D = Discriminator(resolution=64, channels=4)
    logits, recon = D.run(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 25) and recon.shape == (2, 3, 64, 64)
    assert D(torch.rand(2, 3, 64, 64)).shape == (2,)
    assert [f.shape[-1] for f in D.features(torch.rand(1, 3, 64, 64))] == [32, 16, 8]


def test_lightweight_gan_trains_plays_and_resumes(tmp_path):
    data = tmp_path / "set"
    data.mkdir()
    for i in range(12):
        photo(i, (16, 16)).save(data / f"{i:05d}.png")
    run = tmp_path / "run"
    args = ["train", data, "--out", run, "--arch", "lightweight-gan", "--resolution", "16", "--z-dim", "16",
            "--channels", "4", "--batch", "4", "--snapshot-every", "2", "--threads", "1", "--licence", "test"]
    done = masquerade(*args, "--steps", "2", env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr

    generator, card = checkpoint.load(run / "generator-000002.safetensors")
    assert card.architecture == "lightweight-gan" and card.provenance["steps"] == 2
    assert "hinge" in card.provenance["trainer"] and card.provenance["licence"] == "test"
    frames = generator(torch.randn(3, 16))
    assert frames.shape == (3, 3, 16, 16) and 0 <= frames.min() and frames.max() <= 1
    D, d_arch = nets.load_discriminator(run / "discriminator-000002.safetensors")
    assert d_arch == "lightweight-gan-discriminator" and D(frames).shape == (3,)

    show = tmp_path / "show.toml"  # plays in a show: rendered by the real command
    show.write_text(f'[model]\npath = "{run / "generator-000002.safetensors"}"\n[output]\nsize = [32, 32]\nfps = 4\n')
    rendered = masquerade("render", show, "-o", tmp_path / "frames", "--seconds", "0.5", "-q", "--device", "cpu",
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert rendered.returncode == 0, rendered.stderr
    assert len(list((tmp_path / "frames").glob("*.png"))) == 2

    resumed = Trainer(TrainConfig(data=str(data), out=str(run), arch="lightweight-gan", resolution=16, z_dim=16,
                                  g_channels=4, d_channels=4, batch=4, steps=4, snapshot_every=2, threads=1,
                                  snapshot_minutes=1e-9))  # overdue after every step: a snapshot each
    assert resumed.step == 2 and len(resumed.log) == 2
    torch.testing.assert_close(resumed.G_ema.state_dict(), generator.state_dict(), check_dtype=False)
    resumed.run(progress=False)
    assert resumed.step == 4 and len(resumed.log) == 4
    assert (run / "generator-000003.safetensors").is_file() and (run / "generator-000004.safetensors").is_file()


def test_lightweight_gan_discriminator_keeps_telling_fakes_from_reals(tmp_path):
    """The collapse of run emoji128-fastgan (2026-12-02): with G learning as fast as D, G undid each of D's steps,
    D's hinge loss sat at 2.0 (D(real) = D(fake)), so D's gradient was the same for every z and every z drew one
    shape. With G at a quarter of D's rate (the default), D keeps a margin. Two very different images, 16 px.
    Measured (3 seeds, mean D(real) - D(fake) over steps 100..150): 0.43..0.88 by default, 0.02..0.27 with G's
    rate equal to D's; this test's set and seed: 0.54 and 0.02."""
    from PIL import Image, ImageDraw

    data = tmp_path / "two"
    data.mkdir()
    disk = Image.new("RGB", (16, 16), (14, 14, 18))
    ImageDraw.Draw(disk).ellipse([2, 2, 13, 13], fill=(250, 200, 30))
    bar = Image.new("RGB", (16, 16), (14, 14, 18))
    ImageDraw.Draw(bar).rectangle([4, 1, 12, 14], fill=(40, 90, 240))
    disk.save(data / "disk.png")
    bar.save(data / "bar.png")
    trainer = Trainer(TrainConfig(data=str(data), out=str(tmp_path / "run"), arch="lightweight-gan", resolution=16,
                                  z_dim=16, g_channels=4, d_channels=4, batch=8, steps=150, threads=1, seed=0))
    assert trainer.lr_G == trainer.lr_D / 4
    margins = [(lambda s: s["D_real"] - s["D_fake"])(trainer.train_step()) for _ in range(150)]
    assert sum(margins[100:]) / 50 > 0.35, "D no longer tells G's images from the data: G is outpacing it"


def test_train_refuses_a_negative_learning_rate(tmp_path):
    (tmp_path / "set").mkdir()
    photo(0, (16, 16)).save(tmp_path / "set" / "0.png")
    done = masquerade("train", tmp_path / "set", "--out", tmp_path / "run", "--arch", "lightweight-gan",
                      "--resolution", "16", "--g-lr", "-1", env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2 and "--g-lr -1" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()
