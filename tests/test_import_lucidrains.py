"""lucidrains' lightweight-gan and stylegan2-pytorch checkpoints (`model_N.pt` = {'GAN': state_dict,
'version'}) load into our own generators, inferred from the state dict's shapes, and give those packages'
images; stylegan2-pytorch models play through the style path; bad files are refused in one line.
References: tests/data/lucidrains/ (make_reference*.py, README.md); the weights are rebuilt here by
tests/foreign_writer.py.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import cli
from engine import show as shows
from engine.frame import Tick
from engine.generators import importers, lightweight_gan, lucidrains_stylegan2
from engine.generators.checkpoint import CheckpointError
from engine.pipeline import Pipeline

from .conftest import masquerade
from .foreign_writer import fill, read_shapes
from .foreign_writer import lucidrains_stylegan2 as sg2_state

DATA = Path(__file__).parent / "data" / "lucidrains"
TOLERANCE = 1e-4
MODELS = {"lightweight128": (21, 22), "lightweight128_fca": (31, 32)}  # make_reference.py: seeds of G, GE


def checkpoint(name: str) -> dict:
    shapes = read_shapes(DATA / f"{name}_shapes.json")
    gan = {}
    for part, seed in zip(("G", "GE"), MODELS[name], strict=True):
        state = fill(shapes, seed, dict(np.load(DATA / f"{name}_{part}_standing.npz")))
        gan.update({f"{part}.{k}": v for k, v in state.items()})
    return {"GAN": gan, "version": "1.2.1"}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("lucidrains")
    out = {}
    for name in MODELS:
        out[name] = d / f"{name}_model_3.pt"
        torch.save(checkpoint(name), out[name])
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_lightweight_gan_matches_the_package(files, name):
    loaded = importers.load(files[name])
    g = loaded.module
    assert loaded.format == "lightweight-gan" and loaded.card.provenance["entry"] == "GAN.GE (EMA)"
    z = torch.from_numpy(np.load(DATA / f"{name}_z.npy"))
    with torch.no_grad():
        raw = g.synthesize(z)
        image = g(z)
    reference = np.load(DATA / f"{name}_img.npy")
    np.testing.assert_allclose(raw.numpy(), reference, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(image.numpy(), np.clip(reference, 0, 1), atol=TOLERANCE, rtol=0)


def test_inferred_config_and_info(files, tmp_path):
    loaded = importers.load(files["lightweight128"])
    assert loaded.card.config == dict(latent_dim=32, image_size=128, channels=[32] * 5, attn_res_layers=[32],
                                      sle="global_context", out_channels=3)
    assert "inferred" in loaded.card.provenance
    assert importers.load(files["lightweight128_fca"]).card.config["sle"] == "fca"
    out = tmp_path / "lw.safetensors"
    importers.import_model(files["lightweight128"], out)
    z = torch.randn(2, 32)
    with torch.no_grad():
        torch.testing.assert_close(importers.load(out).module(z), loaded.module(z))
    info = masquerade("models", "info", files["lightweight128"])
    assert info.returncode == 0 and "lightweight-gan" in info.stdout and "inferred" in info.stdout


def test_noise_is_fixed_or_off(files):
    g = importers.load(files["lightweight128"]).module
    z = torch.randn(1, 32)
    with torch.no_grad():
        a, b = g(z), g(z)
        g.noise_mode = "none"
        c = g(z)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("edit,message", [
    (lambda gan: gan.pop("GE.out_conv.weight"), "GAN.GE.out_conv.weight: missing"),
    (lambda gan: gan.__setitem__("GE.initial_conv.0.weight", torch.zeros(32, 60, 4, 4)), "initial_conv.0.weight"),
    (lambda gan: gan.__setitem__("GE.layers.1.0.2.1.weight", torch.zeros(64, 32, 3, 3)), "layers.1.0.2.1.weight"),
    (lambda gan: gan.__setitem__("GE.layers.0.0.4.bias", torch.full((64,), float("nan"))), "NaN"),
])
def test_bad_checkpoints_are_refused_in_one_line(tmp_path, edit, message):
    ckpt = checkpoint("lightweight128")
    edit(ckpt["GAN"])
    path = tmp_path / "model_9.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=message) as e:
        importers.load(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    result = masquerade("models", "info", path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_generator_refuses_huge_configs():
    with pytest.raises(ValueError, match="image_size"):
        lightweight_gan.Generator(image_size=2**20)
    with pytest.raises(ValueError, match="latent_dim"):
        lightweight_gan.Generator(latent_dim=10**6)


# ---------------------------------------------------------------- stylegan2-pytorch (make_reference_stylegan2.py)

SG2 = {  # name: (seeds of S, G, SE, GE; lr_mlp it was built with; whether its .config.json lies beside it)
    "sg2l_32": (dict(S=41, G=42, SE=43, GE=44), 0.1, False),
    "sg2l_64_attn": (dict(S=51, G=52, SE=53, GE=54), 0.05, True),
}
SG2_TOLERANCE = 1e-5


def sg2_checkpoint(name: str, parts=("S", "G", "SE", "GE")) -> dict:
    seeds, lr_mlp, _ = SG2[name]
    gan = sg2_state(read_shapes(DATA / f"{name}_shapes.json"), {p: seeds[p] for p in parts}, lr_mlp)
    gan["D.blocks.0.conv_res.weight"] = torch.zeros(8, 3, 1, 1)  # the trainer saves D too: not read
    gan["D_aug.D.blocks.0.conv_res.weight"] = torch.zeros(8, 3, 1, 1)
    return {"GAN": gan, "version": "1.9.0"}


def sg2_write(folder: Path, name: str, ckpt: dict | None = None, config: str | None = None) -> Path:
    """models/<name>/model_3.pt as the trainer lays it out, with its .config.json when the model has one."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model_3.pt"
    torch.save(ckpt or sg2_checkpoint(name), path)
    _, lr_mlp, has_config = SG2[name]
    if config is None and has_config:
        config = json.dumps({"image_size": int(name.split("_")[1]), "network_capacity": 4, "lr_mlp": lr_mlp,
                             "transparent": True, "fq_layers": [], "fq_dict_size": 256, "attn_layers": [2, 4],
                             "no_const": True})
    if config is not None:
        (folder / ".config.json").write_text(config)
    return path


@pytest.fixture(scope="module")
def sg2_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("stylegan2-pytorch")
    return {name: sg2_write(d / "models" / name, name) for name in SG2}


def package_styles(g, z: torch.Tensor) -> torch.Tensor:
    """make_reference_stylegan2.py's styles: z[0], z[1] in every block; z[2] with the later blocks from z[3]."""
    w = g.mapping(z)  # [4, num_ws, latent]
    ws = w[:3].clone()
    ws[2, g.num_ws // 2:] = w[3, 0]
    return ws


@pytest.mark.parametrize("name", list(SG2))
def test_stylegan2_pytorch_matches_the_package(sg2_files, name):
    loaded = importers.load(sg2_files[name])
    g = loaded.module
    assert loaded.format == "lucidrains-stylegan2" and loaded.card.provenance["entry"] == "GAN.SE + GAN.GE (EMA)"
    z = torch.from_numpy(np.load(DATA / f"{name}_z.npy"))
    reference = np.load(DATA / f"{name}_img.npy")
    with torch.no_grad():
        ws = package_styles(g, z)
        raw, image = g.raw(ws), g.render(ws)
    np.testing.assert_allclose(raw.numpy(), reference, atol=SG2_TOLERANCE, rtol=0)
    np.testing.assert_allclose(image.numpy(), np.clip(reference[:, :3], 0, 1), atol=SG2_TOLERANCE, rtol=0)


def test_stylegan2_pytorch_inferred_config_info_and_import(sg2_files, tmp_path):
    loaded = importers.load(sg2_files["sg2l_64_attn"])
    assert loaded.card.config == dict(image_size=64, latent_dim=48, style_depth=2, network_capacity=4, fmap_max=32,
                                      attn_layers=[2, 4], transparent=True, no_const=True, lr_mlp=0.05)
    assert "lr_mlp 0.05 from .config.json" in loaded.card.provenance["inferred"]
    small = importers.load(sg2_files["sg2l_32"])
    assert small.card.config["attn_layers"] == [] and small.card.config["fmap_max"] == 64
    assert "lr_mlp 0.1 assumed" in small.card.provenance["inferred"]
    out = tmp_path / "sg2l.safetensors"
    result = masquerade("models", "import", sg2_files["sg2l_64_attn"], "-o", out)
    assert result.returncode == 0, result.stderr
    z = torch.randn(2, 48)
    with torch.no_grad():
        torch.testing.assert_close(importers.load(out).module(z, truncation_psi=0.7),
                                   loaded.module(z, truncation_psi=0.7), atol=0, rtol=0)
    info = masquerade("models", "info", sg2_files["sg2l_64_attn"])
    assert info.returncode == 0, info.stderr
    for line in ("lucidrains stylegan2-pytorch checkpoint", "architecture  lucidrains-stylegan2",
                 "resolution    64", "w_dim         48", "mapping       2 layers", "inferred", "package_version 1.9.0"):
        assert line in info.stdout, info.stdout


def test_stylegan2_pytorch_without_ema_uses_s_and_g(tmp_path):
    path = sg2_write(tmp_path / "m", "sg2l_32", sg2_checkpoint("sg2l_32", parts=("S", "G")))
    loaded = importers.load(path)
    assert loaded.card.provenance["entry"] == "GAN.S + GAN.G" and loaded.card.config["image_size"] == 32


def test_stylegan2_pytorch_noise_and_truncation(sg2_files):
    g = importers.load(sg2_files["sg2l_32"]).module
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = g(z), g(z)  # the same fixed noise image every call
        none, random = g(z, noise_mode="none"), g(z, noise_mode="random")
        average = g(z, truncation_psi=0)
        seeded = torch.Generator().manual_seed(lucidrains_stylegan2.NOISE_SEED)
        w = g.mapping.style(torch.randn(lucidrains_stylegan2.AVG_SAMPLES, 32, generator=seeded))
    assert torch.equal(a, b) and not torch.equal(a, none) and not torch.equal(a, random)
    assert torch.equal(average[0], average[1]) and torch.equal(average[0], average[2])
    torch.testing.assert_close(g.mapping.w_avg, w.mean(dim=0))  # seeded: the same on every load


def test_stylegan2_pytorch_plays_in_a_show(sg2_files, tmp_path):
    show = tmp_path / "show.toml"
    show.write_text(f'[model]\npath = "{sg2_files["sg2l_64_attn"]}"\n[output]\nsize = [64, 64]\n'
                    '[walk]\ntruncation = 0.75\n[style]\nmix_seed = 3\nnoise_strength = 0.5\n')
    pipeline = Pipeline(shows.load(show), "cpu")
    first, again = pipeline.generate(Tick(0, 0.0)).image, pipeline.generate(Tick(0, 0.0)).image
    later = pipeline.generate(Tick(90, 3.0)).image
    assert first.shape == (1, 3, 64, 64) and 0 <= first.min() and first.max() <= 1
    assert torch.equal(first, again) and not torch.equal(first, later)  # a function of show time: no flicker


def _sg2_edit(key, value):
    return lambda gan: gan.__setitem__(key, value) if value is not None else gan.pop(key)


@pytest.mark.parametrize("edit,config,message", [
    (_sg2_edit("GE.blocks.3.to_rgb.conv.weight", None), None, "GAN.GE.blocks.3.to_rgb.conv.weight: missing"),
    (_sg2_edit("SE.net.0.weight", torch.zeros(32, 16)), None, "GAN.SE.net.0.weight: shape"),
    (_sg2_edit("GE.blocks.1.conv1.weight", torch.zeros(33, 64, 3, 3)), None, "GAN.GE.blocks"),
    (_sg2_edit("GE.blocks.0.to_noise1.bias", torch.full((64,), float("nan"))), None, "NaN"),
    (_sg2_edit("GE.attns.1.0.fn.fn.to_q.weight", torch.zeros(512, 32, 1, 1)), None,
     "GAN.GE.attns.1.0.fn.fn.to_kv.net.0.weight: missing"),
    (lambda gan: [gan.pop(k) for k in [k for k in gan if k.startswith("SE.")]], None, "GAN.SE.net.0.weight: missing"),
    (lambda gan: None, '{"lr_mlp": NaN}', ".config.json: lr_mlp nan"),
    (lambda gan: None, '{"image_size": 128, "lr_mlp": 0.1}', "belongs to another model"),
    (lambda gan: None, '[1, 2', ".config.json: not a readable"),
])
def test_stylegan2_pytorch_bad_checkpoints_are_refused_in_one_line(tmp_path, capsys, edit, config, message):
    ckpt = sg2_checkpoint("sg2l_32")
    edit(ckpt["GAN"])
    path = sg2_write(tmp_path / "models" / "x", "sg2l_32", ckpt, config)
    with pytest.raises(CheckpointError, match=re.escape(message)) as e:
        importers.load(path)
    assert "\n" not in str(e.value) and str(path.parent) in str(e.value)
    for argv in (["models", "info", str(path)], ["models", "import", str(path), "-o", str(tmp_path / "o.safetensors")]):
        assert cli.main(argv) == 2  # the command in process (the real one: test_import's bad files)
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err and str(path.parent) in err, err
    assert not (tmp_path / "o.safetensors").exists()


def test_stylegan2_generator_refuses_out_of_range_configs():
    for kwargs, word in ((dict(image_size=2**20), "image_size"), (dict(image_size=48), "image_size"),
                         (dict(latent_dim=10**6), "latent_dim"), (dict(lr_mlp=float("inf")), "lr_mlp"),
                         (dict(image_size=32, attn_layers=[9]), "attn_layers"), (dict(style_depth=0), "style_depth")):
        with pytest.raises(ValueError, match=word):
            lucidrains_stylegan2.Generator(**kwargs)
