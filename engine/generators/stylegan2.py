"""StyleGAN2 generator in plain PyTorch (Karras et al. 2020, "Analyzing and Improving the Image Quality of
StyleGAN", arXiv:1912.04958), as trained by StyleGAN2-ADA (Karras et al. 2020, arXiv:2006.06676).

Why it is written here: artists bring NVlabs StyleGAN2-ADA-PyTorch pickles, whose networks travel with
their own source code, so playing them the NVlabs way executes whatever the file holds. This file is the
network written from the papers; `nvlabs_pickle` reads only the weights and constructor arguments.
Parameter and buffer names mirror the NVlabs module tree (`mapping.fc0.weight`, `mapping.w_avg`,
`synthesis.b4.const`, `synthesis.b8.conv0.affine.weight`, `synthesis.b8.torgb.weight`,
`synthesis.b4.resample_filter`, `...conv1.noise_const`), so a state dict taken from a pickle loads with
`strict=True` and our `.safetensors` files keep the same keys. Constructor arguments are NVlabs' too
(`mapping_kwargs`, `synthesis_kwargs`), so a pickle's recorded kwargs build the same network.

Inference runs in float32 throughout: NVlabs' fp16 blocks (`num_fp16_res`) are accepted and computed in
float32 with the same activation clamps (`conv_clamp`), which is what NVlabs itself does with
`force_fp32=True`. The up-sampling filter follows NVlabs' `upfirdn2d` reference semantics (zero
insertion, padding, FIR convolution, gain up**2), so images agree with the original to float rounding.

Shapes: z [B, z_dim], c [B, c_dim] -> ws [B, num_ws, w_dim] -> image [B, 3, R, R] in [0, 1];
R is a power of two from 4 to 1024. `G.synthesis(ws)` returns NVlabs' raw scale (about [-1, 1],
`img_channels` channels) so ported style-mixing code reads the same; `G.render(ws)` gives [0, 1] RGB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# name -> (function, default gain); the gains keep the signal's second moment near 1 (He et al. 2015)
_ACTIVATIONS = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, math.sqrt(2)),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), math.sqrt(2)),
    "tanh": (torch.tanh, 1.0),
    "sigmoid": (torch.sigmoid, 1.0),
    "elu": (F.elu, 1.0),
    "selu": (F.selu, 1.0),
    "softplus": (F.softplus, 1.0),
    "swish": (lambda x: torch.sigmoid(x) * x, math.sqrt(2)),
}
NOISE_MODES = ("const", "random", "none")


def _activation_gain(activation: str) -> float:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[activation][1]


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, activation: str = "linear",
             gain: float | None = None, clamp: float | None = None) -> torch.Tensor:
    """Add b along dim 1, apply the activation, scale by `gain` (default: the activation's own), then
    clamp to [-clamp, clamp]: the order NVlabs trains with, so `conv_clamp` bites after the gain."""
    fn, default_gain = _ACTIVATIONS[activation]
    if b is not None:
        x = x + b.reshape(1, -1, *([1] * (x.ndim - 2)))
    x = fn(x)
    gain = default_gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def fir_filter(taps: Sequence[float]) -> torch.Tensor:
    """Normalised low-pass filter: a 2-D outer product for short filters, kept 1-D (separable) from 8
    taps, the same shape NVlabs stores as `resample_filter` (so [1, 3, 3, 1] is a [4, 4] buffer)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1 and f.numel() < 8:
        f = torch.outer(f, f)
    return f / f.sum()


def zero_insert(x: torch.Tensor, up: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H*up, W*up] with the input on every up-th pixel and zeros between: the
    first step of up-sampling by a FIR filter."""
    if up == 1:
        return x
    b, c, h, w = x.shape
    spread = x.new_zeros(b, c, h * up, w * up)
    spread[:, :, ::up, ::up] = x
    return spread


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
              pad: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample by inserting up-1 zeros after each pixel, pad (x0, x1, y0, y1; negative crops), convolve
    with the FIR filter f (a true convolution) times gain, keep every down-th pixel.
    x [B, C, H, W] -> [B, C, (H*up + y0 + y1 - fh + 1) / down, ...]."""
    c = x.shape[1]
    x = F.pad(zero_insert(x, up), [pad[0], pad[1], pad[2], pad[3]])
    if f.ndim == 1:
        f = torch.outer(f, f)  # a separable filter applied along both axes
    kernel = (f * gain).flip([0, 1]).to(x.dtype)  # conv2d correlates; the flip makes it a convolution
    x = F.conv2d(x, kernel[None, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """x [B, C, H, W] -> [B, C, H*up, W*up], low-pass filtered; the gain up**2 restores the brightness
    the inserted zeros took away."""
    taps = f.shape[-1]
    p0, p1 = (taps + up - 1) // 2, (taps - up) // 2
    return upfirdn2d(x, f, up=up, pad=(p0, p1, p0, p1), gain=up**2)


def conv2d_up(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor | None, up: int = 1, padding: int = 0,
              groups: int = 1) -> torch.Tensor:
    """Convolution, or with up > 1 a convolution of the zero-upsampled input followed by the low-pass
    filter. As in NVlabs' trained weights, plain layers correlate (`F.conv2d`) and up-sampling layers
    truly convolve, which is what a transposed convolution of the unflipped kernel does.
    x [B, groups*I, H, W], weight [groups*O, I, k, k] -> [B, groups*O, H*up, W*up]."""
    if up == 1:
        return F.conv2d(x, weight, padding=padding, groups=groups)
    o_total, i, kh, kw = weight.shape
    # conv_transpose2d wants [groups*I, O, k, k]
    w_t = weight.reshape(groups, o_total // groups, i, kh, kw).transpose(1, 2).reshape(groups * i, -1, kh, kw)
    x = F.conv_transpose2d(x, w_t, stride=up, groups=groups)  # full convolution: (H-1)*up + k
    taps = f.shape[-1]
    # pad so that kernel + filter together see `padding` pixels around the upsampled image
    p0 = padding + (taps + up - 1) // 2 - (kw - 1)
    p1 = padding + (taps - up) // 2 - (kw - up)
    return upfirdn2d(x, f, pad=(p0, p1, p0, p1), gain=up**2)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: int = 1, padding: int = 0, resample_filter: torch.Tensor | None = None) -> torch.Tensor:
    """StyleGAN2's modulated convolution (§2.2): scale the kernel's input channels by each sample's
    style, then renormalise every output channel to unit norm (demodulation, which replaces AdaIN and
    removes its droplet artefacts). Each sample's kernel runs as one group of a grouped convolution.
    x [B, I, H, W], weight [O, I, k, k], styles [B, I] -> [B, O, H*up, W*up]."""
    b, i, h, w = x.shape
    o, _, kh, kw = weight.shape
    assert styles.shape == (b, i), f"styles must be [{b}, {i}], got {list(styles.shape)}"
    wb = weight[None] * styles[:, None, :, None, None]  # [B, O, I, k, k]
    if demodulate:
        wb = wb * (wb.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    y = conv2d_up(x.reshape(1, b * i, h, w), wb.reshape(b * o, i, kh, kw), resample_filter, up=up,
                  padding=padding, groups=b)
    return y.reshape(b, o, *y.shape[2:])


# ---------------------------------------------------------------- inference kernels
# Without autograd the layers run these instead of the reference ops above: the same function to float
# rounding (tests/test_speed.py holds them to 1e-5 of the reference), in fewer passes over memory. The
# demodulation comes from the squared weights summed per input channel, so the per-sample kernels are
# made in one pass; the activation gain rides on the demodulation scale (leaky ReLU is positively
# homogeneous); bias and noise are added in place; a plain convolution's bias is added by the convolution.
# On the CPU the activations are kept channels-last (NHWC), the layout oneDNN computes in, so no layer
# reorders its input and output. Measured in docs/performance.md (issue 20).

_SLOPES = {"linear": 1.0, "relu": 0.0, "lrelu": 0.2}  # activations f with f(g x) = g f(x) for g > 0


def demodulation(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1 / |weight * style| per output channel: weight [O, I, k, k], styles [B, I] -> [B, O]. Equals the
    reference's sum over the modulated kernel, without making it: sum_ik (w s)^2 = s^2 . sum_k w^2."""
    return (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()


def fused_is_faster(batch: int, weight: torch.Tensor, height: int, width: int) -> bool:
    """Grouped ("fused": one kernel per sample, made by scaling the weights) or shared-kernel ("non-fused":
    the input scaled per channel, one plain convolution, the output scaled) modulated convolution. Fused
    touches batch * O * I * k * k weights, non-fused batch * I * H * W inputs; at batch > 1 a grouped
    convolution is also slower than one plain batched convolution (bench/peers.py, docs/performance.md)."""
    o, _, kh, kw = weight.shape
    return batch == 1 and o * kh * kw < height * width


def separable_taps(f: torch.Tensor) -> torch.Tensor | None:
    """The 1-D taps a with f = outer(a, a), or None when the 2-D filter f is not such a product."""
    if f.ndim == 1:
        return f
    a = f.sum(dim=0)
    return a if f.shape[0] == f.shape[1] and torch.allclose(torch.outer(a, a), f, rtol=1e-6, atol=1e-9) else None


def fir_same(x: torch.Tensor, f: torch.Tensor, pad: Sequence[int], gain: float = 1.0) -> torch.Tensor:
    """`upfirdn2d(x, f, pad=pad, gain=gain)` (no resampling), separable filters as two 1-D passes and
    symmetric padding done by the convolution itself."""
    c = x.shape[1]
    a = separable_taps(f)
    if a is None:
        return upfirdn2d(x, f, pad=pad, gain=gain)
    k = (a * gain**0.5).flip(0).to(x.dtype)
    taps = k.numel()
    x0, x1, y0, y1 = pad
    if x0 == x1 >= 0:
        x = F.conv2d(x, k.view(1, 1, 1, taps).expand(c, 1, 1, taps), padding=(0, x0), groups=c)
    else:
        x = F.conv2d(F.pad(x, [x0, x1, 0, 0]), k.view(1, 1, 1, taps).expand(c, 1, 1, taps), groups=c)
    if y0 == y1 >= 0:
        return F.conv2d(x, k.view(1, 1, taps, 1).expand(c, 1, taps, 1), padding=(y0, 0), groups=c)
    return F.conv2d(F.pad(x, [0, 0, y0, y1]), k.view(1, 1, taps, 1).expand(c, 1, taps, 1), groups=c)


def modulated_conv2d_inference(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, scale: torch.Tensor,
                               bias: torch.Tensor | None = None, up: int = 1, padding: int = 0,
                               resample_filter: torch.Tensor | None = None,
                               fused: bool | None = None) -> torch.Tensor:
    """`modulated_conv2d` with the demodulation (or any positive per-output factor) given as `scale`,
    plus a bias: x [B, I, H, W], weight [O, I, k, k], styles [B, I], scale [B, O], bias [O] ->
    scale * conv(x, weight * styles) + bias, [B, O, H*up, W*up]. `fused` None: `fused_is_faster`."""
    b, i, h, w = x.shape
    o, _, kh, kw = weight.shape
    if fused is None:
        fused = fused_is_faster(b, weight, h, w)
    if fused:
        if x.is_contiguous(memory_format=torch.channels_last) and up == 1:  # made in the layout the convolution reads
            wb = (weight.permute(0, 2, 3, 1)[None] * (scale[:, :, None] * styles[:, None, :])[:, :, None, None, :]
                  ).permute(0, 1, 4, 2, 3)  # [B, O, I, k, k], stored [B, O, k, k, I]
        else:
            wb = weight[None] * (scale[:, :, None] * styles[:, None, :])[:, :, :, None, None]  # [B, O, I, k, k]
        if up == 1:
            y = F.conv2d(x.reshape(1, b * i, h, w) if b > 1 else x, wb.reshape(b * o, i, kh, kw),
                         None if bias is None else bias.repeat(b), padding=padding, groups=b)
            return y.reshape(b, o, *y.shape[2:]) if b > 1 else y
        y = _conv2d_up_inference(x.reshape(1, b * i, h, w) if b > 1 else x, wb.reshape(b * o, i, kh, kw),
                                 resample_filter, up, padding, groups=b)
        y = y.reshape(b, o, *y.shape[2:]) if b > 1 else y
    else:
        y = _conv2d_up_inference(x * styles[:, :, None, None], weight, resample_filter, up, padding, groups=1)
        y.mul_(scale[:, :, None, None])
    return y if bias is None else y.add_(bias[:, None, None])


def _conv2d_up_inference(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor | None, up: int, padding: int,
                         groups: int) -> torch.Tensor:
    """`conv2d_up`, its low-pass filter separable and its padding inside the convolutions."""
    if up == 1:
        return F.conv2d(x, weight, padding=padding, groups=groups)
    o_total, i, kh, kw = weight.shape
    w_t = weight.reshape(groups, o_total // groups, i, kh, kw).transpose(1, 2).reshape(groups * i, -1, kh, kw)
    x = F.conv_transpose2d(x, w_t, stride=up, groups=groups)
    taps = f.shape[-1]
    p0 = padding + (taps + up - 1) // 2 - (kw - 1)
    p1 = padding + (taps - up) // 2 - (kw - up)
    return fir_same(x, f, (p0, p1, p0, p1), gain=up**2)


def upsample2d_inference(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """`upsample2d` as one transposed depthwise convolution: no zeros inserted, no padding copied."""
    c, taps = x.shape[1], f.shape[-1]
    if f.ndim == 1:
        f = torch.outer(f, f)
    full = F.conv_transpose2d(x, (f * up**2).to(x.dtype)[None, None].expand(c, 1, taps, taps), stride=up, groups=c)
    start = taps - 1 - (taps + up - 1) // 2  # the reference pads (taps + up - 1) // 2 before its convolution
    return full[:, :, start:start + x.shape[2] * up, start:start + x.shape[3] * up]


def activate_(x: torch.Tensor, activation: str, clamp: float | None) -> torch.Tensor:
    """In place: a positively homogeneous activation (its gain already applied), then the clamp."""
    slope = _SLOPES[activation]
    if slope == 0:
        x = x.relu_()
    elif slope != 1:
        x = F.leaky_relu_(x, slope)
    return x.clamp_(-clamp, clamp) if clamp is not None else x


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalized learning rate (ProGAN): weights are stored as N(0, 1) / lr_multiplier
    and scaled at run time, so Adam's step is the same for every layer; lr_multiplier slows the mapping."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        _activation_gain(activation)
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, in] -> [B, out]
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain if self.bias is not None else None
        if self.activation == "linear" and b is not None:
            return torch.addmm(b[None], x, w.t())
        return bias_act(x.matmul(w.t()), b, self.activation)


class Conv2dLayer(nn.Module):
    """Plain equalized-lr convolution; in the generator only the 'resnet' shortcut (1x1, up=2) uses it."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: float | None = None):
        super().__init__()
        self.activation, self.up, self.conv_clamp = activation, up, conv_clamp
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = _activation_gain(activation)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        x = conv2d_up(x, self.weight * self.weight_gain, self.resample_filter, up=self.up, padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, self.activation, gain=self.act_gain * gain, clamp=clamp)


class MappingNetwork(nn.Module):
    """z (and the class label c) -> w, broadcast to num_ws copies. w_avg, the running mean of w seen in
    training, is the centre that the truncation trick pulls toward (psi=0 gives the "average" image)."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        embed_features = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            self.add_module(f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                           lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """z [B, z_dim], c [B, c_dim] -> w [B, num_ws, w_dim] (or [B, w_dim] when num_ws is None).
        psi < 1 moves the first `truncation_cutoff` ws (all when None) toward w_avg: less variety, fewer
        failures (the truncation trick, StyleGAN §2)."""
        parts = []
        if self.z_dim > 0:
            assert z is not None and z.ndim == 2 and z.shape[1] == self.z_dim, \
                f"z must be [B, {self.z_dim}], got {None if z is None else list(z.shape)}"
            parts.append(_normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f"this is a conditional model: pass a class label c of shape [B, {self.c_dim}]")
            assert c.ndim == 2 and c.shape[1] == self.c_dim, f"c must be [B, {self.c_dim}], got {list(c.shape)}"
            parts.append(_normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if self.training and self.w_avg_beta is not None and hasattr(self, "w_avg"):
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x[:, None].repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            if not hasattr(self, "w_avg"):
                raise ValueError("truncation needs w_avg, which this model does not track (w_avg_beta=None)")
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


def _normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x up), per-pixel noise, bias, activation, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None):
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        # its 1-D taps when separable, as numbers found once (and after every load): `separable_taps` per frame
        # reads the filter's values, which torch.compile cannot trace (a graph break at every layer)
        self.resample_taps = self._taps(self.resample_filter)
        self.register_load_state_dict_post_hook(SynthesisLayer._separate)
        self.padding = kernel_size // 2
        self.act_gain = _activation_gain(activation)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)  # styles start at 1: identity
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.noise_gain = 1.0  # a show's multiplier on the learned strength (not a weight: never saved)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", gain: float = 1.0) -> torch.Tensor:
        """x [B, I, R/up, R/up], w [B, w_dim] -> [B, O, R, R]."""
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        if noise is not None and self.noise_gain != 1.0:
            noise = noise * self.noise_gain
        if not torch.is_grad_enabled() and self.activation in _SLOPES and self.act_gain * gain > 0:
            return self._forward_inference(x, w, noise, gain)
        x = modulated_conv2d(x, self.weight, self.affine(w), up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter)
        if noise is not None:
            x = x + noise
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, self.activation, gain=self.act_gain * gain, clamp=clamp)

    @staticmethod
    def _taps(f: torch.Tensor) -> tuple[float, ...] | None:
        if f.is_meta:  # built on the meta device to count its weights (limits.py): no values to read
            return None
        a = separable_taps(f)
        return None if a is None else tuple(a.tolist())

    @staticmethod
    def _separate(module: SynthesisLayer, incompatible_keys) -> None:
        module.resample_taps = SynthesisLayer._taps(module.resample_filter)

    def _forward_inference(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None,
                           gain: float) -> torch.Tensor:
        """The same as `forward` with autograd off, in fewer passes (see the inference kernels above)."""
        g = self.act_gain * gain
        styles = self.affine(w)
        f = self.resample_filter if self.resample_taps is None else self.resample_filter.new_tensor(self.resample_taps)
        x = modulated_conv2d_inference(x, self.weight, styles, demodulation(self.weight, styles) * g,
                                       self.bias * g, up=self.up, padding=self.padding, resample_filter=f)
        if noise is not None:
            x = x.add_(noise * g)
        return activate_(x, self.activation, self.conv_clamp * gain if self.conv_clamp is not None else None)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to colour, not demodulated: the style sets each layer's colour contribution."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # [B, I, R, R] -> [B, C, R, R]
        if not torch.is_grad_enabled():
            styles = self.affine(w) * self.weight_gain
            x = modulated_conv2d_inference(x, self.weight, styles, styles.new_ones(x.shape[0], self.weight.shape[0]),
                                           self.bias, padding=self.weight.shape[-1] // 2, fused=True)
            return x.clamp_(-self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else x
        x = modulated_conv2d(x, self.weight, self.affine(w) * self.weight_gain, demodulate=False,
                             padding=self.weight.shape[-1] // 2)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


ARCHITECTURES = ("orig", "skip", "resnet")


class SynthesisBlock(nn.Module):
    """One resolution: (up-conv,) conv, and the image path. 'skip' sums upsampled ToRGB outputs of every
    resolution (StyleGAN2's default, Fig. 7b); 'resnet' adds a residual shortcut and draws RGB only at the
    end; 'orig' is StyleGAN1's single output."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: float | None = None, **layer_kwargs):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
        self.in_channels, self.w_dim, self.resolution = in_channels, w_dim, resolution
        self.img_channels, self.is_last, self.architecture = img_channels, is_last, architecture
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        self.num_conv = self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp,
                                    **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str = "const") -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B, I, R/2, R/2] (None for the first block), img [B, C, R/2, R/2] or None,
        ws [B, num_conv + num_torgb, w_dim] -> x [B, O, R, R], img [B, C, R, R] or None."""
        w = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const[None].repeat(ws.shape[0], 1, 1, 1)
            if not torch.is_grad_enabled() and x.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's own layout: no reorders per layer
            x = self.conv1(x, next(w), noise_mode)
        elif self.architecture == "resnet":
            shortcut = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w), noise_mode)
            x = shortcut + self.conv1(x, next(w), noise_mode, gain=math.sqrt(0.5))
        else:
            x = self.conv0(x, next(w), noise_mode)
            x = self.conv1(x, next(w), noise_mode)
        if img is not None:
            img = upsample2d(img, self.resample_filter) if torch.is_grad_enabled() else \
                upsample2d_inference(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w))
            img = y if img is None else (img + y if torch.is_grad_enabled() else img.add_(y))
        return x, img


class SynthesisNetwork(nn.Module):
    """ws -> image, one block per resolution 4, 8, ... R; channels min(channel_base / res, channel_max)."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, architecture: str = "skip",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: float | None = None,
                 kernel_size: int = 3, use_noise: bool = True, activation: str = "lrelu",
                 fp16_channels_last: bool = False):
        super().__init__()
        levels = int(math.log2(img_resolution)) if img_resolution > 0 else 0
        if not 4 <= img_resolution <= 1024 or 2**levels != img_resolution:
            raise ValueError(f"StyleGAN2 resolution must be a power of two in 4..1024, got {img_resolution}")
        del num_fp16_res, fp16_channels_last  # float32 here; the clamps that fp16 training needed still apply
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, levels + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim, res, img_channels,
                                   is_last, architecture=architecture, resample_filter=resample_filter,
                                   conv_clamp=conv_clamp, kernel_size=kernel_size, use_noise=use_noise,
                                   activation=activation)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            self.add_module(f"b{res}", block)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """ws [B, num_ws, w_dim] -> image [B, img_channels, R, R] on NVlabs' scale (about [-1, 1])."""
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), \
            f"ws must be [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            # a block's ToRGB shares its w with the next block's first conv
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), noise_mode)
            w_idx += block.num_conv
        return img


class Generator(nn.Module):
    """StyleGAN2 generator: `mapping` (z, c -> ws) then `synthesis` (ws -> image).

    Constructor arguments are NVlabs' (so a pickle's recorded kwargs build it) and are kept in `.config`:
    mapping_kwargs: num_layers, embed_features, layer_features, activation, lr_multiplier, w_avg_beta;
    synthesis_kwargs: channel_base, channel_max, num_fp16_res, architecture, resample_filter, conv_clamp,
    kernel_size, use_noise, activation, fp16_channels_last.
    """

    # devices where `[model] compile = "auto"` compiles it (engine/generators/speed.py): measured faster
    # there, the same frames within 1e-4 (docs/performance.md, issue 20)
    compile_pays_on = ("cpu",)

    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, img_resolution: int = 1024,
                 img_channels: int = 3, mapping_kwargs: dict | None = None, synthesis_kwargs: dict | None = None):
        super().__init__()
        mapping_kwargs, synthesis_kwargs = dict(mapping_kwargs or {}), dict(synthesis_kwargs or {})
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution = self.resolution = img_resolution
        self.img_channels = img_channels
        self.config = _json_ready(dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                       img_channels=img_channels, mapping_kwargs=mapping_kwargs,
                                       synthesis_kwargs=synthesis_kwargs))
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const") -> torch.Tensor:
        """z [B, z_dim], c [B, c_dim] (conditional models only) -> image [B, 3, R, R] in [0, 1]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.render(ws, noise_mode)

    def render(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """ws [B, num_ws, w_dim] (e.g. mixed from two `mapping` calls) -> image [B, 3, R, R] in [0, 1].
        One-channel models are repeated to grey RGB; extra channels (alpha) are dropped."""
        img = self.synthesis(ws, noise_mode)  # [B, img_channels, R, R], about [-1, 1]
        if img.shape[1] == 1:
            img = img.repeat(1, 3, 1, 1)
        return ((img[:, :3] + 1) * 0.5).clamp(0, 1)


def _json_ready(value):
    """Constructor kwargs as JSON would give them back (tuples become lists), so config round-trips."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value
