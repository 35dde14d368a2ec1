"""BigGAN-deep in the pytorch-pretrained-biggan layout (config.json + pytorch_model.bin) loads into our own
generator and gives that package's images; truncation, class mixes, class walks and `models info`.

tests/data/biggan/ holds references made by the package's own code (make_reference.py, README.md); the
weights are rebuilt here by tests/foreign_writer.py, so no weights are committed.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.frame import Tick
from engine.generators import biggan, importers
from engine.generators.checkpoint import CheckpointError
from engine.show import StyleSection
from engine.style import Styler
from engine.walks.keyframes import KeyframeLoop

from .conftest import masquerade
from .foreign_writer import fill, read_shapes

DATA = Path(__file__).parent / "data" / "biggan"
TOLERANCE = 1e-4
SEED = 14  # make_reference.py


def package_state() -> dict[str, torch.Tensor]:
    return fill(read_shapes(DATA / "small128_shapes.json"), SEED, dict(np.load(DATA / "small128_standing.npz")))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The package's folder layout: config.json + pytorch_model.bin (torch.save of its state dict)."""
    d = tmp_path_factory.mktemp("biggan-small128")
    torch.save(package_state(), d / "pytorch_model.bin")
    shutil.copy(DATA / "small128_config.json", d / "config.json")
    return d


@pytest.fixture(scope="module")
def g(folder):
    return importers.load(folder).module


@pytest.mark.parametrize("name,psi", [("t040", 0.4), ("t025", 0.25), ("t100", 1.0)])
def test_matches_the_package(g, name, psi):
    z = torch.from_numpy(np.load(DATA / f"small128_z_{name}.npy"))
    c = torch.from_numpy(np.load(DATA / "small128_c.npy"))  # two one-hots and a 0.3 / 0.7 mix
    with torch.no_grad():
        out = g.synthesize(z, c, psi)
    np.testing.assert_allclose(out.numpy(), np.load(DATA / f"small128_img_{name}.npy"), atol=TOLERANCE, rtol=0)


def test_walk_z_becomes_the_truncated_normal():
    z = torch.from_numpy(np.load(DATA / "normal_z.npy"))
    np.testing.assert_allclose(biggan.truncated_normal(z).numpy(), np.load(DATA / "normal_z_truncnorm.npy"),
                               atol=1e-5)  # scipy truncnorm(-2, 2).ppf(Phi(z))
    wide = biggan.truncated_normal(torch.linspace(-8, 8, 101))
    assert wide.abs().max() <= 2 and (wide.diff() >= 0).all()


def test_forward_is_truncation_then_synthesis(g):
    z = torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(0))
    c = torch.eye(1000)[[3, 500]]
    with torch.no_grad():
        image = g(z, c=c, truncation_psi=0.5)
        raw = g.synthesize(biggan.truncated_normal(z) * 0.5, c, 0.5)
    assert image.shape == (2, 3, 128, 128) and 0 <= image.min() and image.max() <= 1
    torch.testing.assert_close(image, (raw + 1) / 2)
    with pytest.raises(ValueError, match="conditional"):
        g(z)


def test_bin_with_config_beside_it_and_info(folder, tmp_path):
    loaded = importers.load(folder / "pytorch_model.bin")
    assert loaded.format == "biggan" and loaded.card.architecture == "biggan" and loaded.module.c_dim == 1000
    out = tmp_path / "small.safetensors"
    importers.import_model(folder, out)
    again = importers.load(out).module
    z, c = torch.randn(1, 32), torch.eye(1000)[[207]]
    with torch.no_grad():
        torch.testing.assert_close(again(z, c=c, truncation_psi=0.7), loaded.module(z, c=c, truncation_psi=0.7))
    info = masquerade("models", "info", str(folder))
    assert info.returncode == 0, info.stderr
    assert "conditional   yes (c_dim 1000)" in info.stdout and "207 golden retriever;" in info.stdout


def test_real_128_layout_is_read():
    """The key names and shapes of the package's default (biggan-deep-128) model, as the package gave them."""
    shapes = read_shapes(DATA / "biggan_deep_128_shapes.json")
    state = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    ours = {k for k in shapes if not k.endswith(("weight_u", "weight_v"))}
    ours = {k.replace("weight_orig", "weight") for k in ours}
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in biggan.Generator().state_dict().items()}
    assert ours == set(expected)
    assert all(tuple(shapes[k if k in shapes else k.replace("weight", "weight_orig")]) == s
               for k, s in expected.items())
    assert biggan.is_biggan_state(state)


def test_old_torch_spectral_norm_files(tmp_path):
    """torch < 1.1 saved W / sigma as `weight` beside weight_orig and weight_u, without weight_v."""
    state = package_state()
    old = {}
    for k, v in state.items():
        if k.endswith("weight_v"):
            continue
        old[k] = v
        if k.endswith("weight_orig"):
            p = k[: -len("weight_orig")]
            mat = v.double().reshape(v.shape[0], -1)
            sigma = state[p + "weight_u"].double() @ (mat @ state[p + "weight_v"].double())
            old[p + "weight"] = (v.double() / sigma).float()
    torch.save(old, tmp_path / "pytorch_model.bin")
    shutil.copy(DATA / "small128_config.json", tmp_path / "config.json")
    g = importers.load(tmp_path).module
    z = torch.from_numpy(np.load(DATA / "small128_z_t040.npy"))
    with torch.no_grad():
        out = g.synthesize(z, torch.from_numpy(np.load(DATA / "small128_c.npy")), 0.4)
    np.testing.assert_allclose(out.numpy(), np.load(DATA / "small128_img_t040.npy"), atol=TOLERANCE, rtol=0)


def test_class_walk_and_live_class(g):
    walk = KeyframeLoop(z_dim=g.z_dim, seed=1, classes=[207, 980, 1], seconds_per_keyframe=2.0, easing="linear")
    assert len(walk.keys) == 3
    assert walk.classes_at(Tick(0, 0.0)) == [(207, 1.0), (980, 0.0)]
    assert walk.classes_at(Tick(0, 3.0)) == [(980, 0.5), (1, 0.5)]
    assert walk.classes_at(Tick(0, 5.0)) == [(1, 0.5), (207, 0.5)]  # the loop closes
    styler = Styler(g, StyleSection(), "show", classes=walk.classes)  # no class_label needed with a class walk
    z = walk.step(Tick(0, 3.0))
    with torch.no_grad():
        image = styler(z, 0.6, label=walk.classes_at(Tick(0, 3.0)))
        c = torch.zeros(1, 1000)
        c[0, 980] = c[0, 1] = 0.5
        torch.testing.assert_close(image, g(z, c=c, truncation_psi=0.6))
        fader = styler(z, 0.6, label=207.0)  # the style.class fader (/masq/style/class)
        torch.testing.assert_close(fader, g(z, c=torch.eye(1000)[[207]], truncation_psi=0.6))
    with pytest.raises(ValueError, match="one per keyframe"):
        KeyframeLoop(z_dim=4, classes=[1, 2], keyframes=3)
    with pytest.raises(Exception, match="walk.classes: class 1000"):
        Styler(g, StyleSection(), "show", classes=[1, 1000])
    with pytest.raises(Exception, match="class_label"):
        Styler(g, StyleSection(), "show")  # conditional: a class is needed


@pytest.mark.parametrize("change,message", [
    (lambda cfg, d: cfg.update(channel_width=1e9), "channel_width must be an integer"),
    (lambda cfg, d: cfg.update(eps=float("nan")), "eps must be a number"),
    (lambda cfg, d: cfg.update(output_dim=256), "output_dim 256 does not match"),
    (lambda cfg, d: cfg.update(channel_width=8), "config.json implies"),
    (lambda cfg, d: cfg.update(z_dim=2**40), "z_dim must be an integer"),
    (lambda cfg, d: (d / "config.json").unlink(), "config.json is missing"),
])
def test_bad_configs_are_refused_in_one_line(folder, tmp_path, change, message):
    d = tmp_path / "m"
    shutil.copytree(folder, d)
    cfg = json.loads((d / "config.json").read_text())
    change(cfg, d)
    if (d / "config.json").exists():
        (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=message) as e:
        importers.load(d)
    assert "\n" not in str(e.value) and str(d) in str(e.value)
    result = masquerade("models", "info", str(d / "pytorch_model.bin"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
