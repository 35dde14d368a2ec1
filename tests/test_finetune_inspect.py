"""`masquerade inspect`: the snapshot browser and the novelty inspector flag a model that copies its
training images, and not one that does not."""

import re

import pytest
import torch

from engine import generators
from engine.generators import checkpoint
from engine.training import novelty
from engine.training.gan import TrainConfig, Trainer

from .conftest import masquerade
from .photos import photo


@pytest.fixture(scope="module")
def copier(tmp_path_factory):
    """A model, and a training set holding 40 photos plus exactly the 16 samples the inspector draws from it."""
    root = tmp_path_factory.mktemp("copier")
    data = root / "data"
    data.mkdir()
    for i in range(40):
        photo(i, (16, 16)).save(data / f"photo{i:03d}.png")
    torch.manual_seed(1)
    G = generators.create("dcgan", z_dim=16, resolution=16, base_channels=8).eval()
    checkpoint.save(G, "dcgan", root / "copier.safetensors", {"dataset": str(data)})
    with torch.no_grad():
        samples = G(novelty.sample_latents(16, 16, seed=0))
    for j, tile in enumerate(novelty._tiles(samples)):  # the training set now holds the model's own output
        tile.save(data / f"copied{j:03d}.png")
    torch.manual_seed(2)
    fresh = generators.create("dcgan", z_dim=16, resolution=16, base_channels=8).eval()
    checkpoint.save(fresh, "dcgan", root / "fresh.safetensors", {})
    return root, data


def test_a_model_that_copies_its_training_images_is_flagged(copier):
    root, data = copier
    report = root / "copier.html"
    summary = novelty.inspect(root / "copier.safetensors", report, data=data)
    snap = summary["snapshots"][0]
    assert snap["memorisation"] == 1.0 and snap["median_ratio"] < 0.1
    page = report.read_text()
    assert "memorisation score <span class=\"bad\">100%</span>" in page
    assert page.count('class="copy"') == 16
    for src in re.findall(r'src="([^"]+)"', page):  # every picture the page shows is there
        assert (root / src).is_file(), src


def test_a_model_that_does_not_copy_is_not_flagged(copier):
    root, data = copier
    summary = novelty.inspect(root / "fresh.safetensors", root / "fresh.html", data=data)
    assert summary["snapshots"][0]["memorisation"] == 0.0
    assert summary["snapshots"][0]["median_ratio"] > 0.5


def test_a_training_image_is_its_own_nearest_neighbour(copier):
    root, data = copier
    summary = novelty.inspect(root / "fresh.safetensors", root / "still.html", data=data,
                              images=[data / "photo007.png"])
    still = summary["images"][0]
    assert still["nearest"] == "photo007.png" and still["distance"] < 1e-4 and still["copy"]


def test_cli_inspects_every_snapshot_of_a_run_with_its_discriminator(copier, tmp_path):
    _, data = copier
    run = tmp_path / "run"
    Trainer(TrainConfig(data=str(data), out=str(run), resolution=16, z_dim=16, g_channels=8, d_channels=8, batch=8,
                        steps=4, snapshot_every=2, threads=1)).run(progress=False)
    result = masquerade("inspect", run)  # the data set is read from the snapshots' provenance
    assert result.returncode == 0, result.stderr
    assert "generator-000002.safetensors: memorisation" in result.stdout
    assert "generator-000004.safetensors: memorisation" in result.stdout
    page = (run / "report.html").read_text()
    assert page.count("walk-generator-") == 2  # the same walk, once per snapshot
    assert "samples-000004.png" in page and "losses-000004.png" in page
    assert "discriminator's early and late layers" in page
    missing = masquerade("inspect", run / "nothing")
    assert missing.returncode == 2 and "no such run folder" in missing.stderr
