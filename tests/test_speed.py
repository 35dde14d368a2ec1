"""The generator speed options ([model] precision / compile): the same pictures, within rounding."""

import pytest
import torch

from engine import show as shows
from engine.frame import Tick
from engine.generators import importers
from engine.generators.speed import Speed, SpeedError, accelerate
from engine.pipeline import Pipeline
from engine.show import ShowError

from .conftest import DEFAULT_MODEL, ROOT

UNCOND = ROOT / "tests" / "data" / "stylegan2" / "uncond_skip32.safetensors"
CPU = torch.device("cpu")


def show_with(tmp_path, model, extra):
    path = tmp_path / "show.toml"
    path.write_text(f'[model]\npath = "{model}"\n{extra}')
    return shows.load(path)


@pytest.mark.parametrize("model", [DEFAULT_MODEL, UNCOND])
def test_bf16_gives_the_same_picture_within_rounding(tmp_path, model):
    fp32 = Pipeline(show_with(tmp_path, model, ""), "cpu").generate(Tick(0, 1.3)).image
    bf16 = Pipeline(show_with(tmp_path, model, 'precision = "bf16"'), "cpu").generate(Tick(0, 1.3)).image
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    err = (bf16 - fp32).abs()
    assert 0 < err.max() < 0.06 and err.mean() < 0.01  # bf16 keeps 8 bits of mantissa: close, not equal


def test_compiled_generator_computes_the_same_function():
    eager = importers.load(DEFAULT_MODEL).module.eval()
    fast = accelerate(importers.load(DEFAULT_MODEL).module.eval(), CPU, Speed("fp32", compile=True))
    z = torch.randn(2, eager.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        torch.testing.assert_close(fast(z), eager(z), atol=1e-5, rtol=0)


def test_options_that_cannot_work_here_are_named(tmp_path):
    with pytest.raises(ShowError, match=r"model.precision must be"):
        show_with(tmp_path, DEFAULT_MODEL, 'precision = "int4"')
    with pytest.raises(ShowError, match=r"cuda_graphs needs model.compile"):
        show_with(tmp_path, DEFAULT_MODEL, "cuda_graphs = true")
    with pytest.raises(ShowError, match=r"\[model\] precision fp16 needs a CUDA device"):
        Pipeline(show_with(tmp_path, DEFAULT_MODEL, 'precision = "fp16"'), "cpu")
    with pytest.raises(SpeedError, match="cuda_graphs needs compile = true and a CUDA device"):
        Speed("fp32", compile=True, cuda_graphs=True).resolved(CPU)
