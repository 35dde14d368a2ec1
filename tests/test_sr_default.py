"""The shipped super-resolution model: `superres` with no path loads it, it upscales x4 and beats
bicubic on pictures it never saw; its trainer runs and resumes from its state file."""

import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from engine import filters
from engine.filters.superres import SHIPPED, SuperRes, SuperResError, load_sr
from engine.generators import checkpoint
from engine.training import emoji
from engine.training.superres import (
    SRTrainConfig,
    SRTrainer,
    compare,
    degrade,
    downscale,
    heldout_pictures,
    procedural_picture,
    to_tensor,
)

from .conftest import masquerade

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shipped():
    return filters.create("superres")  # no path: the shipped model


def test_no_path_means_the_shipped_model(shipped):
    assert isinstance(shipped, SuperRes) and Path(shipped.config["path"]) == SHIPPED
    assert SHIPPED.is_file() and SHIPPED.with_suffix(".md").is_file()  # the model and its card
    info = shipped.info
    assert (info.architecture, info.scale) == ("superres-compact", 4)
    assert info.config["num_feat"] <= 32 and info.config["num_conv"] <= 8  # small enough for a CPU, live
    card = checkpoint.read_card(SHIPPED)  # a Masquerade model file, with its provenance
    assert card.architecture == "superres-compact" and card.provenance["steps"] > 0
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    y = shipped(x)
    assert y.shape == (1, 3, 256, 256) and 0 <= y.min() and y.max() <= 1


def test_upscales_a_gan_frame_faithfully(shipped):
    generator, _ = checkpoint.load(ROOT / "assets" / "models" / "emoji64.safetensors")
    with torch.no_grad():
        frame = generator(torch.randn(2, generator.z_dim, generator=torch.Generator().manual_seed(3)))
    y = shipped(frame)
    assert y.shape == (2, 3, 256, 256)
    # shrunk back it is the frame again, and it is not just a smooth interpolation of it
    assert (F.avg_pool2d(y, 4) - frame).abs().mean() < 0.02
    bicubic = F.interpolate(frame, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    assert (y - bicubic).abs().mean() > 0.005


@pytest.mark.parametrize("source", ["emoji", "procedural"])
def test_beats_bicubic_on_held_out_pictures(shipped, source):
    if source == "emoji" and not emoji.FONT.is_file():
        pytest.skip(f"{emoji.FONT} not installed (Debian fonts-noto-color-emoji)")
    pictures = heldout_pictures(emoji=12 if source == "emoji" else 0, clipart=0,
                                procedural=12 if source == "procedural" else 0)[source]
    ours, bicubic = compare(shipped.net, pictures)
    assert ours > bicubic + 1.0, f"{source}: model {ours:.2f} dB, bicubic {bicubic:.2f} dB"


# -- the trainer -------------------------------------------------------------------------------------

def tiny(tmp_path: Path, steps: int) -> SRTrainer:
    rng = random.Random(0)
    pictures = to_tensor([procedural_picture(rng) for _ in range(6)])
    heldout = {"procedural": to_tensor([procedural_picture(random.Random(99))])}
    cfg = SRTrainConfig(out=str(tmp_path / "run"), steps=steps, batch=4, patch=8, num_feat=8, num_conv=1,
                        snapshot_every=3, log_every=1, warmup=2, threads=1)
    return SRTrainer(cfg, pictures=pictures, heldout=heldout)


def test_training_runs_and_resumes_from_its_state_file(tmp_path):
    first = tiny(tmp_path, steps=3)
    path = first.run()
    assert first.step == 3 and (tmp_path / "run" / "state.pt").is_file()
    model, info = load_sr(path)  # a snapshot is a model file the filter reads
    assert (info.architecture, info.scale, info.config["num_feat"]) == ("superres-compact", 4, 8)
    assert checkpoint.read_card(path).provenance["steps"] == 3

    again = tiny(tmp_path, steps=5)  # same folder: picks up where the first stopped
    assert again.step == 3
    for name, tensor in first.net.state_dict().items():
        torch.testing.assert_close(again.net.state_dict()[name], tensor, atol=0, rtol=0)
    assert again.opt.state_dict()["state"], "the optimiser's moments come back too"
    again.run()
    assert again.step == 5
    steps = [entry["step"] for entry in again.log if "loss" in entry]
    assert steps == [1, 2, 3, 4, 5]  # one log across both runs
    assert any("eval" in entry for entry in again.log)


def test_an_x2_model_trains_from_the_command_line_and_plays_as_the_filter(tmp_path):
    r = masquerade("train-sr", "--out", tmp_path / "x2", "--scale", 2, "--steps", 2, "--batch", 2, "--num-feat", 8,
                   "--num-conv", 1, "--clipart", 0, "--procedural", 8, "--snapshot-every", 2, "--threads", 1)
    assert r.returncode == 0, r.stderr
    path = sorted((tmp_path / "x2").glob("*.safetensors"))[-1]
    model, info = load_sr(path)
    assert info.scale == 2
    sr = filters.create("superres", path=str(path)).eval()
    with torch.no_grad():
        y = sr(torch.rand(1, 3, 16, 16))
    assert y.shape == (1, 3, 32, 32) and 0 <= y.min() and y.max() <= 1


def test_training_lowers_the_loss(tmp_path):
    trainer = tiny(tmp_path, steps=60)
    torch.manual_seed(1)
    lr, hr = trainer.batch()
    with torch.no_grad():
        before = (trainer.net(lr) - hr).abs().mean().item()
    trainer.run()
    with torch.no_grad():
        after = (trainer.net(lr) - hr).abs().mean().item()
    assert after < 0.8 * before


def test_degradation():
    hr = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    lr = degrade(hr, 4, max_blur=1.5, max_noise=0.02, generator=torch.Generator().manual_seed(1))
    assert lr.shape == (3, 3, 8, 8) and 0 <= lr.min() and lr.max() <= 1
    clean = degrade(hr, 4, max_blur=0, max_noise=0, generator=torch.Generator().manual_seed(1))
    # with no blur and no noise, every sample is one of the three plain downscales
    for i in range(3):
        assert min((clean[i] - downscale(hr[i:i + 1], 4, mode)[0]).abs().max()
                   for mode in ("area", "bicubic", "bilinear")) < 1e-5
    assert (lr - clean).abs().mean() > 1e-3  # blur and noise do something


def test_upscaled_show_runs_the_shipped_model():
    from engine import show as shows
    from engine.frame import Tick
    from engine.pipeline import Pipeline

    pipeline = Pipeline(shows.load(ROOT / "shows" / "upscaled.toml"), "cpu")
    frame = pipeline.generate(Tick(0, 0.0))
    assert pipeline.resolution == 256 and frame.image.shape == (1, 3, 256, 256)
    assert Path(pipeline.filters[0].config["path"]) == SHIPPED


def test_a_generators_own_frames_train_the_net_and_are_measured_held_out(tmp_path):
    """`--generator MODEL`: the GAN's frames, shrunk, are inputs and themselves the targets; other latents' frames
    are held out and measured; `--from` starts from a trained SR file instead of from bilinear."""
    from engine.training import nets
    from engine.training.superres import compare

    torch.manual_seed(3)
    G, _ = nets.fresh("dcgan", 32, 16, 8, 8)
    with torch.no_grad():  # an untrained DCGAN draws near-flat grey: strong last weights give it shapes to learn
        G.main[-2].weight.mul_(30)
    checkpoint.save(G.eval(), "dcgan", tmp_path / "gan.safetensors", {})
    rng = random.Random(0)
    pictures = to_tensor([procedural_picture(rng) for _ in range(6)])
    def trained(weight: float):
        cfg = SRTrainConfig(out=str(tmp_path / f"gen{weight}"), steps=40, batch=4, patch=8, scale=2, num_feat=8,
                            num_conv=1, snapshot_every=40, log_every=10, warmup=2, threads=1, lr=3e-3,
                            generator=str(tmp_path / "gan.safetensors"), generator_frames=32, generator_batch=8,
                            generator_weight=weight)
        torch.manual_seed(0)
        trainer = SRTrainer(cfg, pictures=pictures, heldout={})
        return trainer, trainer.run()

    trainer, path = trained(4.0)
    frames = trainer.heldout["generator frames"]
    assert frames.shape == (64, 3, 32, 32) and trainer.frames.shape == (32, 3, 32, 32)
    assert not any(torch.equal(f, g) for f in frames[:4] for g in trainer.frames)  # other latents
    ours, _ = compare(trainer.net, frames, scale=2)
    without, _ = compare(trained(0.0)[0].net, frames, scale=2)  # the same run, the frames' loss weighed 0
    assert ours > without + 0.3, f"held-out generator frames: {ours:.2f} dB trained on them, {without:.2f} without"
    card = checkpoint.read_card(path)
    assert card.provenance["generator"].endswith("gan.safetensors")
    assert "generator frames" in card.provenance["heldout_psnr"]

    tuned = SRTrainer(SRTrainConfig(out=str(tmp_path / "ft"), steps=1, batch=4, patch=8, scale=2, num_feat=8,
                                    num_conv=1, threads=1, init=str(path)), pictures=pictures, heldout={})
    for name, tensor in trainer.net.state_dict().items():
        torch.testing.assert_close(tuned.net.state_dict()[name], tensor, atol=0, rtol=0)
    with pytest.raises(SuperResError, match="not an SR net of this size"):
        SRTrainer(SRTrainConfig(out=str(tmp_path / "bad"), steps=1, batch=4, patch=8, scale=4, num_feat=8,
                                num_conv=1, init=str(path)), pictures=pictures, heldout={})


def test_train_sr_names_a_missing_generator_file(tmp_path):
    r = masquerade("train-sr", "--out", tmp_path / "x", "--steps", 1, "--generator", tmp_path / "absent.safetensors")
    assert r.returncode == 2 and "--generator" in r.stderr and "absent.safetensors" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_default_shows_sr_knows_its_generator():
    """The default show's x4 SR was trained on its generator's frames too: on frames of latents it never saw, it
    restores them (shrunk x4) better than the general shipped model, and both beat bicubic by far."""
    from engine import show as shows
    from engine.training.superres import compare, generator_frames

    show = shows.load(ROOT / "shows" / "default.toml")
    (row,) = [f for f in show.filters if f.kind == "superres"]
    tuned, info = load_sr(Path(row.args["path"]) if Path(row.args["path"]).is_absolute() else ROOT / row.args["path"])
    assert info.scale == 4 and Path(row.args["path"]).name != SHIPPED.name
    assert checkpoint.read_card(info.path).provenance["generator"] == "assets/models/emoji64-v2.safetensors"
    frames = generator_frames(show.model_path, 48, seed=10_000)  # the held-out latents of its training run
    ours, bicubic = compare(tuned, frames)
    general, _ = compare(load_sr(SHIPPED)[0], frames)
    assert ours > general + 0.5 and ours > bicubic + 2.0, \
        f"tuned {ours:.2f}, general {general:.2f}, bicubic {bicubic:.2f}"
