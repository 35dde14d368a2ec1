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


# ---------------------------------------------------------------- the inference kernels (issue 20)
# Without autograd StyleGAN2/3 layers take `stylegan2.modulated_conv2d_inference` and
# `stylegan3.filtered_lrelu_inference`; with autograd on they run the reference ops. Both paths must give
# the same image to 1e-5 (the NVlabs-matching tests in test_stylegan2/3 run the inference path).


def _perturbed(g):
    with torch.no_grad():
        gen = torch.Generator().manual_seed(5)
        for name, p in g.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
            elif name.endswith("bias"):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return g.eval().requires_grad_(False)


def _both_paths(g, *args, **kwargs):
    with torch.enable_grad():  # no parameter requires grad: nothing is recorded, the reference ops run
        reference = g(*args, **kwargs)
    with torch.no_grad():
        fast = g(*args, **kwargs)
    return reference, fast


@pytest.mark.parametrize("architecture", ["skip", "resnet", "orig"])
@pytest.mark.parametrize("batch", [1, 3])
def test_stylegan2_inference_path_matches_the_reference(architecture, batch):
    from engine.generators import stylegan2
    torch.manual_seed(0)
    g = _perturbed(stylegan2.Generator(z_dim=32, w_dim=32, img_resolution=64, mapping_kwargs={"num_layers": 2},
                                       synthesis_kwargs={"channel_base": 2048, "channel_max": 64, "conv_clamp": 1.0,
                                                         "architecture": architecture}))
    z = torch.randn(batch, 32, generator=torch.Generator().manual_seed(1))
    for noise_mode in ("const", "none"):
        reference, fast = _both_paths(g, z, noise_mode=noise_mode)
        torch.testing.assert_close(fast, reference, atol=1e-5, rtol=0)
    assert (reference - 0.5).abs().max() > 0.1  # not a flat picture


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("batch", [1, 4])
def test_fused_and_per_sample_modulated_convolutions_agree(up, batch):
    from engine.generators import stylegan2
    gen = torch.Generator().manual_seed(2)
    x, weight = torch.randn(batch, 6, 9, 9, generator=gen), torch.randn(5, 6, 3, 3, generator=gen)
    styles, bias = torch.randn(batch, 6, generator=gen), torch.randn(5, generator=gen)
    f = stylegan2.fir_filter([1, 3, 3, 1])
    reference = stylegan2.modulated_conv2d(x, weight, styles, up=up, padding=1, resample_filter=f) + bias[:, None, None]
    scale = stylegan2.demodulation(weight, styles)
    for fused in (True, False):
        fast = stylegan2.modulated_conv2d_inference(x, weight, styles, scale, bias, up=up, padding=1,
                                                    resample_filter=f, fused=fused)
        torch.testing.assert_close(fast, reference, atol=1e-5, rtol=0)


def _naive_filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, clamp):
    """NVlabs' `_filtered_lrelu_ref` spelled out: bias; zeros inserted, padded, the 2-D up filter (times
    up**2) convolved over every sample; leaky ReLU, gain, clamp; the 2-D down filter convolved over every
    sample, then every down-th kept. Separable filters as their outer products."""
    import torch.nn.functional as F

    def conv(x, f):
        f = torch.outer(f, f) if f.ndim == 1 else f
        return F.conv2d(x, f.flip([0, 1])[None, None].expand(x.shape[1], 1, *f.shape), groups=x.shape[1])

    bsz, c, h, w = x.shape
    x = x + b[None, :, None, None]
    stuffed = x.new_zeros(bsz, c, h * up, w * up)
    stuffed[:, :, ::up, ::up] = x
    x = conv(F.pad(stuffed, list(padding)), fu) * up**2
    x = (F.leaky_relu(x, slope) * gain).clamp(-clamp, clamp)
    return conv(x, fd)[:, :, ::down, ::down] if fd is not None else x[:, :, ::down, ::down]


# the factors and filters StyleGAN3 uses: filter_size 6 times the factor, lrelu_upsampling 2, so up and down
# are 1, 2 or 4 (4: where the sampling rate doubles); config R's down filter is radial (2-D)
@pytest.mark.parametrize("up, down, radial", [(2, 2, False), (4, 2, False), (2, 4, False), (4, 4, False),
                                              (2, 1, False), (2, 2, True), (4, 2, True), (2, 4, True)])
def test_filtered_lrelu_matches_the_naive_reference(up, down, radial):
    from engine.generators import stylegan3
    gen = torch.Generator().manual_seed(up * 10 + down)
    rate = 16 * max(up, down)
    fu = stylegan3.design_lowpass_filter(6 * up, 3.0, 2.5, rate)
    fd = stylegan3.design_lowpass_filter(6 * down, 3.5, 2.0, rate, radial=radial) if down > 1 else None
    x, b = torch.randn(2, 4, 24, 22, generator=gen), torch.randn(4, generator=gen)
    for padding in ([11, 10, 11, 10], [3, -2, 0, 7], [20, 19, -1, 2]):
        expected = _naive_filtered_lrelu(x, fu, fd, b, up, down, padding, 2**0.5, 0.2, 0.8)
        got = stylegan3.filtered_lrelu_inference(x, fu, fd, b, up=up, down=down, padding=padding, clamp=0.8)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("config", ["T", "R"])
def test_stylegan3_inference_path_matches_the_reference(config):
    from engine.generators import stylegan3
    torch.manual_seed(0)
    extra = {"conv_kernel": 1, "use_radial_filters": True} if config == "R" else {}
    g = _perturbed(stylegan3.Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=1024, channel_max=32,
                                       conv_clamp=1.0, **extra))
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(1))
    reference, fast = _both_paths(g, z)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=0)
    assert (reference - 0.5).abs().max() > 0.05
