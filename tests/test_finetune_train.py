"""Training and fine-tuning: StyleGAN2 from scratch with R1, path length and ADA; fine-tuning from a model
file (its discriminator too when it lies beside it); kimg; snapshots with config, grid and loss plot;
resume; two processes on the gloo backend. Every run is tiny (16 px, a few steps)."""

import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image

from engine import generators
from engine.generators import checkpoint
from engine.generators.checkpoint import CheckpointError
from engine.training import distributed, nets
from engine.training.ada import AdaptiveAugment, augment
from engine.training.gan import TrainConfig, Trainer
from engine.training.plots import loss_plot

from .conftest import masquerade
from .photos import photo


@pytest.fixture(scope="module")
def data16(tmp_path_factory):
    folder = tmp_path_factory.mktemp("set16")
    for i in range(24):
        photo(i, (16, 16)).save(folder / f"{i:05d}.png")
    return folder


def tiny(data, out, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), resolution=16, z_dim=16, g_channels=8, d_channels=8, batch=8,
                threads=1, licence="test")
    return TrainConfig(**{**base, **kw})


def test_stylegan2_trains_with_r1_path_length_and_ada_then_resumes(data16, tmp_path):
    # a target below any r_t: the heuristic can only raise p, by 4 steps * 8 images / 100 images = 0.32
    cfg = tiny(data16, tmp_path / "run", arch="stylegan2", kimg=0.064, snapshot_kimg=0.032, pl_weight=2.0,
               ada_kimg=0.1, ada_target=-2.0)
    trainer = Trainer(cfg)
    assert cfg.total_steps == 8 and cfg.snapshot_steps == 4 and trainer.augment_name == "ada"
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    last = trainer.run(progress=False)
    assert last.name == "generator-000008.safetensors"
    changed = [k for k, v in trainer.G.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("synthesis") for k in changed) and any(k.startswith("mapping") for k in changed)
    assert "r1" in trainer.log[0] and "pl" in trainer.log[0]  # the lazy penalties ran at step 0
    assert all(np.isfinite(e["loss_D"]) and np.isfinite(e["loss_G"]) for e in trainer.log)
    assert trainer.log[-1]["kimg"] == pytest.approx(0.064)
    assert [e["ada_p"] for e in trainer.log[2:8:2]] == pytest.approx([0, 0.32, 0.32])
    assert trainer.log[7]["ada_p"] == pytest.approx(0.64) and "r_t" in trainer.log[3]

    generator, card = checkpoint.load(last)  # plays in a show at once
    assert card.architecture == "stylegan2" and generator(torch.randn(2, 16)).shape == (2, 3, 16, 16)
    assert card.provenance["config"]["arch"] == "stylegan2" and card.provenance["kimg"] == pytest.approx(0.064)
    d, d_arch = nets.load_discriminator(tmp_path / "run" / "discriminator-000008.safetensors")
    assert d_arch == "stylegan2-discriminator" and d(torch.rand(4, 3, 16, 16)).shape == (4,)
    for name in ("samples-000004.png", "losses-000004.png", "samples-000008.png", "losses-000008.png"):
        assert Image.open(tmp_path / "run" / name).size[0] > 100

    resumed = Trainer(tiny(data16, tmp_path / "run", arch="stylegan2", kimg=0.096, pl_weight=2.0, ada_kimg=0.1,
                           ada_target=-2.0))
    assert resumed.step == 8 and resumed.ada.p == pytest.approx(trainer.ada.p)
    torch.testing.assert_close(resumed.G_ema.state_dict(), trainer.G_ema.state_dict())
    resumed.run(progress=False)
    assert resumed.step == 12 and len(resumed.log) == 12 and resumed.ada.p == pytest.approx(0.96)


def test_fine_tuning_starts_from_the_model_and_its_discriminator(data16, tmp_path):
    torch.manual_seed(5)
    G = generators.create("dcgan", z_dim=16, resolution=16, base_channels=8)
    D = generators.create("dcgan-discriminator", resolution=16, base_channels=8)
    checkpoint.save(G, "dcgan", tmp_path / "mine.safetensors", {"dataset": "somewhere"})
    checkpoint.save(D, "dcgan-discriminator", tmp_path / "mine-discriminator.safetensors", {})

    trainer = Trainer(tiny(data16, tmp_path / "ft", init=str(tmp_path / "mine.safetensors"), steps=3,
                           snapshot_every=3, z_dim=99, resolution=64))  # size and z come from the model
    assert trainer.arch == "dcgan" and trainer.resolution == 16 and trainer.z_dim == 16
    torch.testing.assert_close(trainer.G.state_dict(), G.state_dict())
    assert trainer.source["from_discriminator"].endswith("mine-discriminator.safetensors")
    with torch.no_grad():  # spectral norm re-applied to a trained (norm-folded) D changes it little
        img = torch.rand(4, 3, 16, 16)
        assert torch.allclose(trainer.D.eval()(img), D(img), atol=0.5)
        trainer.D.train()
    last = trainer.run(progress=False)
    card = checkpoint.read_card(last)
    assert card.provenance["from"].endswith("mine.safetensors") and card.provenance["from_dataset"] == "somewhere"
    assert "fine-tuned" in card.provenance["trainer"]
    assert not torch.equal(trainer.G.state_dict()["main.0.weight"], G.state_dict()["main.0.weight"])


def test_a_dcgan_grows_to_twice_its_size_from_what_it_learned(data16, tmp_path):
    """`--grow-to`: the layers up to the old output are the old model's (the same features for the same z), the
    grown model's first picture is the old one enlarged, and the grown run's snapshot plays at the new size."""
    small = Trainer(tiny(data16, tmp_path / "small", g_channels=16, steps=2, snapshot_every=2)).run(progress=False)
    data32 = tmp_path / "set32"
    data32.mkdir()
    for i in range(24):
        photo(i, (32, 32)).save(data32 / f"{i:05d}.png")
    trainer = Trainer(tiny(data32, tmp_path / "grown", resolution=32, init=str(small), grow_to=32, steps=2,
                           snapshot_every=2))
    old, _ = checkpoint.load(small)
    z = torch.randn(64, 16)
    with torch.no_grad():
        grown, old = trainer.G.eval(), old.eval()
        assert torch.equal(grown.main[:6](z[:, :, None, None]), old.main[:6](z[:, :, None, None]))
        enlarged = torch.nn.functional.interpolate(old(z), scale_factor=2, mode="nearest")
        picture = grown(z)
        assert (picture - enlarged).abs().max() < 1e-3  # its first picture: the old one, enlarged, border included
        random_top = generators.create("dcgan", **{**old.config, "resolution": 32, "base_channels": 8}).eval()
        random_top.load_state_dict({**random_top.state_dict(), **{k: v for k, v in old.state_dict().items()
                                                                  if random_top.state_dict()[k].shape == v.shape}})
        assert (random_top(z) - enlarged).abs().mean() > 0.02  # random new layers: far off (the check can tell)
        grown.train()
    last = trainer.run(progress=False)
    generator, card = checkpoint.load(last)
    assert generator.resolution == 32 and card.provenance["grown_from"] == 16
    assert card.provenance["from_discriminator"] == "fresh"
    with pytest.raises(CheckpointError, match="grows to twice its size, 32, not 64"):
        nets.grow(small, 64, 8)
    sg2 = Trainer(tiny(data16, tmp_path / "sg2", arch="stylegan2", steps=1, snapshot_every=1)).run(progress=False)
    with pytest.raises(CheckpointError, match="'stylegan2' generator; --grow-to grows a DCGAN"):
        nets.grow(sg2, 32, 8)
    r = masquerade("train", data32, "--out", tmp_path / "cli", "--grow-to", 32, "--steps", 1)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "masquerade: error: --grow-to needs --from MODEL (the model to grow)"]


def test_d_warmup_trains_the_discriminator_alone_first(data16, tmp_path):
    """`--d-warmup N`: for N steps only D learns (G and its EMA stay the model given); then both do."""
    trainer = Trainer(tiny(data16, tmp_path / "run", steps=4, d_warmup=3, snapshot_every=4))
    g0 = {k: v.clone() for k, v in trainer.G.named_parameters()}  # (its batch-norm statistics follow the batches)
    ema0 = {k: v.clone() for k, v in trainer.G_ema.named_parameters()}
    d0 = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    for _ in range(3):
        stats = trainer.train_step()
        assert "loss_G" not in stats and np.isfinite(stats["loss_D"])
    assert all(torch.equal(v, g0[k]) for k, v in trainer.G.named_parameters())
    assert all(torch.equal(v, ema0[k]) for k, v in trainer.G_ema.named_parameters())
    assert any(not torch.equal(v, d0[k]) for k, v in trainer.D.state_dict().items())
    stats = trainer.train_step()
    assert np.isfinite(stats["loss_G"])
    assert any(not torch.equal(v, g0[k]) for k, v in trainer.G.named_parameters())


def test_fine_tuning_stylegan2_without_a_discriminator_starts_a_fresh_one(data16, tmp_path):
    G, _ = nets.fresh("stylegan2", 16, 16, 8, 8)
    checkpoint.save(G, "stylegan2", tmp_path / "sg2.safetensors", {})
    trainer = Trainer(tiny(data16, tmp_path / "ft", init=str(tmp_path / "sg2.safetensors"), steps=1,
                           snapshot_every=1))
    assert trainer.arch == "stylegan2" and trainer.source["from_discriminator"] == "fresh"
    trainer.run(progress=False)
    with pytest.raises(CheckpointError, match="holds a stylegan2 generator"):
        Trainer(tiny(data16, tmp_path / "other", init=str(tmp_path / "sg2.safetensors"), arch="dcgan"))


def test_ada_probability_follows_the_overfitting_heuristic():
    ada = AdaptiveAugment(target=0.6, speed_kimg=1.0, interval=4)
    for _ in range(4):
        ada.observe(torch.full((8,), 3.0))  # D sure of every real: r_t = 1 > 0.6
    assert ada.adjust(images=100) == pytest.approx(0.1) and ada.r_t == 1.0
    for _ in range(4):
        ada.observe(torch.tensor([1.0, -1.0] * 4))  # r_t = 0 < 0.6
    assert ada.adjust(images=50) == pytest.approx(0.05)
    assert ada.adjust(images=50) == pytest.approx(0.05)  # nothing observed: p stays
    for _ in range(40):
        ada.observe(torch.full((8,), -1.0))
        ada.adjust(images=1000)
    assert ada.p == 0.0  # clamped


def test_ada_augment_is_identity_at_zero_and_differentiable():
    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    assert augment(x, 0.0) is x
    y = augment(x, 1.0)
    assert y.shape == x.shape and not torch.allclose(y, x)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_loss_plot_draws_both_curves():
    log = [{"step": i, "kimg": i / 10, "loss_D": 1 + np.sin(i / 5), "loss_G": 2 + np.cos(i / 7)} for i in range(80)]
    arr = np.asarray(loss_plot(log)).reshape(-1, 3).astype(int)
    red = ((arr[:, 0] > 180) & (arr[:, 2] < 120)).sum()
    blue = ((arr[:, 2] > 180) & (arr[:, 0] < 120)).sum()
    assert red > 200 and blue > 200


def _ddp_worker(rank, world, port, cfg, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        trainer = Trainer(cfg)
        trainer.run(progress=False)
        # parameters only: running averages (w_avg) are per process, as in NVlabs' code; rank 0's are saved
        torch.save({k: v.detach() for k, v in trainer.G.named_parameters()}, f"{out}/G-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_on_gloo_keep_identical_replicas(data16, tmp_path):
    import torch.multiprocessing as mp

    cfg = tiny(data16, tmp_path / "run", arch="stylegan2", steps=3, snapshot_every=3, batch=8)
    mp.spawn(_ddp_worker, args=(2, distributed.free_port(), cfg, str(tmp_path)), nprocs=2, join=True)
    g0, g1 = (torch.load(tmp_path / f"G-rank{r}.pt", weights_only=True) for r in (0, 1))
    torch.testing.assert_close(g0, g1, rtol=0, atol=0)  # averaged gradients: the same step everywhere
    fresh_g, _ = nets.fresh("stylegan2", 16, 16, 8, 8)
    assert not torch.equal(g0["synthesis.b16.conv1.weight"], fresh_g.state_dict()["synthesis.b16.conv1.weight"])
    card = checkpoint.read_card(tmp_path / "run" / "generator-000003.safetensors")
    assert card.provenance["processes"] == 2 and card.provenance["batch"] == 8


def test_cli_fine_tunes_for_kimg_from_a_model_file(data16, tmp_path):
    G, _ = nets.fresh("dcgan", 16, 16, 8, 8)
    checkpoint.save(G, "dcgan", tmp_path / "start.safetensors", {})
    run = tmp_path / "run"
    result = masquerade("train", data16, "--out", run, "--from", tmp_path / "start.safetensors", "--kimg", "0.032",
                        "--snapshot-kimg", "0.016", "--batch", "8", "--threads", "1", "--augment", "ada")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in run.glob("generator-*")) == ["generator-000002.safetensors",
                                                                "generator-000004.safetensors"]
    card = checkpoint.read_card(run / "generator-000004.safetensors")
    assert card.provenance["config"]["augment"] == "ada" and "--from" in card.provenance["command"]
    state = torch.load(run / "state.pt", weights_only=True)
    assert json.loads(state["config"])["kimg"] == 0.032


def test_train_names_a_device_it_cannot_use(tmp_path):
    from .conftest import masquerade

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the error for a missing one cannot happen here")
    data = tmp_path / "data"
    data.mkdir()
    out = masquerade("train", data, "--out", tmp_path / "run", "--device", "cuda")
    assert out.returncode == 2 and "--device cuda: no CUDA device" in out.stderr
    out = masquerade("train", data, "--out", tmp_path / "run", "--device", "tpu")
    assert out.returncode == 2 and "--device must be auto, cpu, cuda" in out.stderr


def test_minibatch_spread_lets_the_discriminator_see_a_collapsed_batch():
    """`--mbstd G`: the extra channel is the features' spread over each group of G images, so a batch of one
    picture repeated (mode collapse) and a varied batch differ there, whatever each image looks like alone."""
    from engine.generators.dcgan import MinibatchStd

    layer = MinibatchStd(4)
    varied = torch.randn(8, 5, 4, 4)
    collapsed = varied[:1].expand(8, -1, -1, -1).contiguous()
    out_v, out_c = layer(varied), layer(collapsed)
    assert out_v.shape == (8, 6, 4, 4) and torch.equal(out_v[:, :5], varied)
    assert float(out_c[:, 5].max()) < 1e-3 and float(out_v[:, 5].min()) > 0.5
    # groups are images i, i + 2 (B/G = 2 groups of 4): images 0 and 2 share a value, 0 and 1 need not
    assert torch.equal(out_v[0, 5], out_v[2, 5]) and torch.equal(out_v[1, 5], out_v[7, 5])
    assert layer(torch.randn(6, 5, 4, 4)).shape == (6, 6, 4, 4)  # 6 images: groups of 3
    assert float(layer(varied[:1])[:, 5].abs().max()) < 1e-3  # one image: no spread to see


def test_fine_tuning_with_mbstd_starts_a_fresh_discriminator_that_keeps_it(data16, tmp_path):
    torch.manual_seed(5)
    G = generators.create("dcgan", z_dim=16, resolution=16, base_channels=8)
    D = generators.create("dcgan-discriminator", resolution=16, base_channels=8)
    checkpoint.save(G, "dcgan", tmp_path / "mine.safetensors", {})
    checkpoint.save(D, "dcgan-discriminator", tmp_path / "mine-discriminator.safetensors", {})
    trainer = Trainer(tiny(data16, tmp_path / "ft", init=str(tmp_path / "mine.safetensors"), steps=2,
                           snapshot_every=2, mbstd=4, d_warmup=1))
    assert trainer.source["from_discriminator"] == "fresh"  # the one beside has no spread channel
    last = trainer.run(progress=False)
    d_file = last.with_name(last.name.replace("generator", "discriminator"))
    D2, arch = nets.load_discriminator(d_file)
    assert arch == "dcgan-discriminator" and D2.config["mbstd_group"] == 4
    assert D2(torch.rand(8, 3, 16, 16)).shape == (8,)
    resumed = Trainer(tiny(data16, tmp_path / "ft", init=str(tmp_path / "mine.safetensors"), steps=3,
                           snapshot_every=3, mbstd=4, d_warmup=1))  # state.pt's D has the channel too
    assert resumed.run(progress=False).name == "generator-000003.safetensors"


@pytest.mark.parametrize("argv, fragment", [(("--mbstd", "65"), "--mbstd 65"), (("--mbstd", "-1"), "--mbstd"),
                                            (("--mbstd", "4", "--arch", "stylegan2"), "DCGAN")])
def test_bad_mbstd_is_one_line(data16, tmp_path, argv, fragment):
    result = masquerade("train", data16, "--out", tmp_path / "run", "--steps", "1", *argv)
    assert result.returncode == 2 and fragment in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_minibatch_spread_matches_nvlabs_layer():
    """The same numbers as NVlabs' own `MinibatchStdLayer(group_size=4, num_channels=1)` (stylegan2-ada-pytorch,
    training/networks.py, commit d72cc7d) gave for this input, run outside the repository: max difference 0."""
    from engine.generators.dcgan import MinibatchStd

    x = torch.randn(8, 5, 4, 4, generator=torch.Generator().manual_seed(0))
    spread = MinibatchStd(4)(x)[:, 5]
    expected = torch.tensor([0.8193038, 0.802533])  # groups {0, 2, 4, 6} and {1, 3, 5, 7}
    torch.testing.assert_close(spread, expected.repeat(4)[:, None, None].expand(8, 4, 4), atol=1e-6, rtol=0)
