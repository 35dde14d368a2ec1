"""bench/model_quality.py's scores are the published ones: density and coverage (Naeem et al. 2020) and precision
and recall (Kynkaenniemi et al. 2019), checked against the authors' own `prdc` package (clovaai, PyPI prdc 0.2),
run outside the repository on the same features."""

import importlib.util

import numpy as np
import torch

from .conftest import ROOT

_spec = importlib.util.spec_from_file_location("model_quality", ROOT / "bench" / "model_quality.py")
model_quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(model_quality)
scores = model_quality.scores


def test_scores_match_the_authors_prdc_package():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(500, 32)).astype(np.float32)
    fake = (rng.normal(size=(400, 32)) * 0.8 + 0.3).astype(np.float32)
    ours = scores(torch.from_numpy(real), torch.from_numpy(fake), k=5)
    # prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=5):
    expected = {"precision": 0.9825, "recall": 0.21, "density": 3.096, "coverage": 0.978}
    for name, value in expected.items():
        assert abs(ours[name] - value) < 1e-4, f"{name}: {ours[name]} against prdc's {value}"


def test_a_collapsed_generator_covers_less_of_the_data():
    """The measure a user reads for variety: samples that are one picture repeated cover almost nothing."""
    rng = np.random.default_rng(1)
    real = torch.from_numpy(rng.normal(size=(300, 16)).astype(np.float32))
    varied = torch.from_numpy(rng.normal(size=(300, 16)).astype(np.float32))
    collapsed = varied[:3].repeat(100, 1) + 0.01 * torch.from_numpy(rng.normal(size=(300, 16)).astype(np.float32))
    assert scores(real, varied)["coverage"] > 0.8 and scores(real, collapsed)["coverage"] < 0.1
