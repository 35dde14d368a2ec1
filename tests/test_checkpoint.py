"""The project's model files: round trip, provenance, and clear errors for bad files."""

import json

import pytest
import torch
from safetensors.torch import save_file

from engine import generators
from engine.generators import checkpoint
from engine.generators.checkpoint import CheckpointError

from .conftest import DEFAULT_MODEL


def test_round_trip_gives_the_same_images(tmp_path):
    torch.manual_seed(0)
    g = generators.create("dcgan", z_dim=16, resolution=16, base_channels=8).eval()
    path = tmp_path / "g.safetensors"
    checkpoint.save(g, "dcgan", path, {"dataset": "noise", "steps": 0})
    loaded, card = checkpoint.load(path)
    z = torch.randn(3, 16)
    for (name, a), b in zip(g.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{name} changed in the round trip"  # the weights, bit for bit
    with torch.no_grad():  # the images: oneDNN may pick another kernel for another memory layout (~1e-6)
        torch.testing.assert_close(loaded(z), g(z), atol=1e-5, rtol=0)
    assert card.architecture == "dcgan" and card.config["resolution"] == 16
    assert card.provenance == {"dataset": "noise", "steps": 0}
    assert card.parameters == sum(p.numel() for p in g.parameters())


def test_shipped_default_model_has_a_card_and_draws_varied_images():
    g, card = checkpoint.load(DEFAULT_MODEL)
    for key in ("dataset", "steps", "licence", "command"):
        assert card.provenance.get(key), f"model card lacks {key}"
    with torch.no_grad():
        images = g(torch.randn(16, g.z_dim, generator=torch.Generator().manual_seed(0)))
    assert images.shape == (16, 3, 64, 64)
    assert 0 <= images.min() and images.max() <= 1
    # not mode-collapsed: different latents give clearly different pictures
    flat = images.flatten(1)
    distances = torch.cdist(flat, flat)[~torch.eye(16, dtype=torch.bool)]
    assert distances.min() > 0.1 * distances.mean()


def test_truncated_file_is_named(tmp_path):
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(DEFAULT_MODEL.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        checkpoint.load(bad)


def test_garbage_file_is_named(tmp_path):
    bad = tmp_path / "noise.safetensors"
    bad.write_bytes(b"\x00\xff" * 500)
    with pytest.raises(CheckpointError, match="noise.safetensors: not a readable safetensors"):
        checkpoint.load(bad)


def test_foreign_safetensors_points_to_import(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="models import"):
        checkpoint.load(path)


def test_unknown_architecture_and_mismatched_weights(tmp_path):
    path = tmp_path / "odd.safetensors"
    meta = {"masquerade.format": "1", "masquerade.architecture": "stylegan9", "masquerade.config": "{}"}
    save_file({"w": torch.zeros(2)}, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="stylegan9"):
        checkpoint.load(path)
    meta.update({"masquerade.architecture": "dcgan",
                 "masquerade.config": json.dumps({"z_dim": 8, "resolution": 8})})
    save_file({"w": torch.zeros(2)}, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="weights do not fit 'dcgan'"):
        checkpoint.load(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="gone.safetensors: no such model file"):
        checkpoint.load(tmp_path / "gone.safetensors")


def test_truncation_pulls_toward_the_average_image():
    g, _ = checkpoint.load(DEFAULT_MODEL)
    z = torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        average = g(z, truncation_psi=0.0)
        torch.testing.assert_close(average[0], average[1])  # psi 0: every z gives the same image
        full, half = g(z), g(z, truncation_psi=0.5)
    assert (half - average).abs().mean() < (full - average).abs().mean()
