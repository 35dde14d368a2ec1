"""StyleGAN3 generator in plain PyTorch (Karras et al. 2021, "Alias-Free Generative Adversarial Networks",
arXiv:2106.12423), configs T (translation equivariant, 3x3 convolutions) and R (rotation equivariant, 1x1
convolutions and radially symmetric down-sampling filters).

Why it is written here: as for StyleGAN2 (`stylegan2.py`), NVlabs pickles carry their own source code;
`nvlabs_pickle` reads only their weights and constructor kwargs and builds this module from them. The
mapping network is StyleGAN2's (`stylegan2.MappingNetwork`, with StyleGAN3's defaults). Parameter and
buffer names mirror NVlabs' module tree (`mapping.w_avg`, `synthesis.input.freqs`, `synthesis.input.transform`,
`synthesis.L0_36_512.affine.weight`, `...magnitude_ema`, `...up_filter`, `...down_filter`), so a state dict
from a pickle loads with `strict=True`, and constructor arguments are NVlabs' (`Generator(z_dim, c_dim, w_dim,
img_resolution, img_channels, mapping_kwargs, **synthesis_kwargs)`), so a pickle's recorded kwargs build
the same layer schedule (channels, sizes, sampling rates, cutoffs, filters).

The paper in the code: the image is a continuous signal, one unit wide, held as samples at a rate `s`
with a margin around it. Each layer is a modulated convolution, then a "filtered leaky ReLU": upsample to
a higher rate with an ideal-ish low-pass filter (Kaiser-windowed sinc, designed here as
`scipy.signal.firwin` does), apply the nonlinearity there, low-pass again and downsample (§3.2). Config R
uses a jinc-based radial filter for that second low-pass (§3.3). Cutoffs rise geometrically from layer to
layer; the last layers are critically sampled (`Band`, `synthesis_schedule`). The input is a set of
Fourier features (§3.1) whose frequencies and phases turn and shift with `synthesis.input.transform`, so
the whole image can be rotated or translated continuously (`transform_matrix`).

Inference runs in float32 throughout (NVlabs' `use_fp16` layers are what NVlabs computes on the CPU).

Shapes: z [B, z_dim], c [B, c_dim] -> ws [B, num_ws, w_dim] (num_ws = num_layers + 2) -> image
[B, 3, R, R] in [0, 1]. `G.synthesis(ws)` returns NVlabs' raw scale (about [-1, 1]); `G.render(ws)` [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.generators import stylegan2
from engine.generators.stylegan2 import (
    NOISE_MODES,
    FullyConnectedLayer,
    MappingNetwork,
    demodulation,
    modulated_conv2d,
    modulated_conv2d_inference,
    zero_insert,
)

MAPPING_DEFAULTS = {"num_layers": 2, "lr_multiplier": 0.01, "w_avg_beta": 0.998}


# ---------------------------------------------------------------- filter design (float64, numpy)


def kaiser_beta(numtaps: int, width: float, fs: float) -> float:
    """Kaiser's window shape for a filter of `numtaps` taps whose transition band is `width` wide at
    sampling rate fs (Kaiser 1974, as in `scipy.signal.kaiser_beta(kaiser_atten(...))`)."""
    attenuation = 2.285 * (numtaps - 1) * math.pi * (width / (0.5 * fs)) + 7.95  # dB
    if attenuation > 50:
        return 0.1102 * (attenuation - 8.7)
    if attenuation > 21:
        return 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    return 0.0


def bessel_j1(x: np.ndarray) -> np.ndarray:
    """Bessel function of the first kind, order 1, to float64 precision: Bessel's integral
    J1(x) = 1/(2 pi) * integral over a period of cos(t - x sin t), whose integrand is periodic and
    analytic, so the trapezoidal rule converges geometrically once it has more points than about |x|."""
    x = np.asarray(x, dtype=np.float64)
    n = 64 + 2 * math.ceil(float(np.abs(x).max(initial=0)))
    t = 2 * np.pi * np.arange(n) / n
    return np.cos(t - x[..., None] * np.sin(t)).mean(axis=-1)


def sinc_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """Separable low-pass taps: a sinc cut at `cutoff` under a Kaiser window, normalised to unit DC gain.
    The same numbers as `scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)`. [numtaps]"""
    nyquist = 0.5 * fs
    if not 0 < cutoff < nyquist:
        raise ValueError(f"cutoff {cutoff} must lie strictly between 0 and fs/2 = {nyquist}")
    fc = cutoff / nyquist  # as a fraction of Nyquist
    m = np.arange(numtaps) - 0.5 * (numtaps - 1)
    h = fc * np.sinc(fc * m) * np.kaiser(numtaps, kaiser_beta(numtaps, width, fs))
    return h / h.sum()


def jinc_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """Radially symmetric low-pass taps (config R): the 2-D ideal disc filter, a jinc J1(2 pi fc r) / (pi r),
    under the outer product of two Kaiser windows, normalised to unit DC gain. [numtaps, numtaps]"""
    x = (np.arange(numtaps) - 0.5 * (numtaps - 1)) / fs
    r = np.hypot(x[None, :], x[:, None])
    safe_r = np.where(r > 0, r, 1.0)
    h = np.where(r > 0, bessel_j1(2 * cutoff * (np.pi * safe_r)) / (np.pi * safe_r), cutoff)  # r -> 0: cutoff
    window = np.kaiser(numtaps, kaiser_beta(numtaps, width, fs))
    h = h * np.outer(window, window)
    return h / h.sum()


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> torch.Tensor | None:
    """The float32 filter a layer keeps as a buffer; None for one tap (the identity, no buffer)."""
    if numtaps < 1:
        raise ValueError(f"a filter needs at least one tap, got {numtaps}")
    if numtaps == 1:
        return None
    taps = jinc_lowpass if radial else sinc_lowpass
    return torch.as_tensor(taps(numtaps, cutoff, width, fs), dtype=torch.float32)


# ---------------------------------------------------------------- resampling


def _fir_axis(x: torch.Tensor, f: torch.Tensor | None, dim: int, up: int, down: int, pad0: int, pad1: int,
              gain: float) -> torch.Tensor:
    """upfirdn along one axis (dim -1: width, -2: height): insert up-1 zeros after each sample, pad (negative
    crops), convolve with the 1-D filter f times gain, keep every down-th sample."""
    b, c, h, w = x.shape
    if up > 1:
        if dim == -1:
            x = torch.stack([x] + [torch.zeros_like(x)] * (up - 1), dim=-1).reshape(b, c, h, w * up)
        else:
            x = torch.stack([x] + [torch.zeros_like(x)] * (up - 1), dim=-2).reshape(b, c, h * up, w)
    x = F.pad(x, [pad0, pad1] if dim == -1 else [0, 0, pad0, pad1])
    if f is None:
        x = x * gain if gain != 1 else x
        return x[..., ::down] if dim == -1 else x[..., ::down, :]
    kernel = (f * gain).flip(0).to(x.dtype)  # conv2d correlates; the flip makes it a true convolution
    shape, stride = ((1, 1, 1, -1), (1, down)) if dim == -1 else ((1, 1, -1, 1), (down, 1))
    return F.conv2d(x, kernel.reshape(shape).expand(c, -1, -1, -1), stride=stride, groups=c)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1,
              pad: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample (zero insertion), pad (x0, x1, y0, y1 on the upsampled grid; negative crops), convolve with
    the FIR filter f times gain, downsample. f is [taps] (separable: applied along width, then height, each
    with sqrt(gain)), [taps, taps] (2-D), or None (identity). `stylegan2.upfirdn2d`'s semantics, with
    separable filters kept separable and the decimation folded into the convolution's stride.
    x [B, C, H, W] -> [B, C, (H*up + y0 + y1 - taps + 1) / down, ...]."""
    if f is None or f.ndim == 1:
        g = gain**0.5
        x = _fir_axis(x, f, -1, up, down, pad[0], pad[1], g)
        return _fir_axis(x, f, -2, up, down, pad[2], pad[3], g)
    c = x.shape[1]
    x = F.pad(zero_insert(x, up), [pad[0], pad[1], pad[2], pad[3]])
    kernel = (f * gain).flip([0, 1]).to(x.dtype)
    return F.conv2d(x, kernel[None, None].expand(c, -1, -1, -1), stride=down, groups=c)


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor | None,
                   up: int = 1, down: int = 1, padding: Sequence[int] = (0, 0, 0, 0), gain: float = math.sqrt(2),
                   slope: float = 0.2, clamp: float | None = None) -> torch.Tensor:
    """The alias-free nonlinearity (§3.2): add the bias, upsample by `up` through the low-pass fu, apply the
    leaky ReLU times gain and clamp at the higher rate, low-pass with fd and keep every `down`-th sample.
    The reference way, which autograd runs; inference takes `filtered_lrelu_inference` (same numbers).
    x [B, C, H, W] -> [B, C, (H*up + y0 + y1 - len(fu) - len(fd) + 2 + down - 1) // down, ...]."""
    if b is not None:
        x = x + b.reshape(1, -1, 1, 1).to(x.dtype)
    x = upfirdn2d(x, fu, up=up, pad=padding, gain=up**2)  # gain up**2 restores what the zeros took away
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d(x, fd, down=down)


def _up_axis(x: torch.Tensor, f: torch.Tensor, dim: int, up: int, pad0: int, pad1: int, gain: float) -> torch.Tensor:
    """`_fir_axis` with down = 1, polyphase: each of the `up` output phases is a short convolution of the
    input itself (taps f[r], f[r + up], ...), so no zeros are inserted and none are multiplied. The phases
    interleave into the full convolution, which the padding then crops or extends with zeros."""
    b, c, h, w = x.shape
    length, taps = x.shape[dim], f.numel()
    per_phase = -(-taps // up)
    h_taps = F.pad(f * gain, [0, per_phase * up - taps]).to(x.dtype)
    phases = h_taps.view(per_phase, up).t().flip(1)  # [up, per_phase]: phase r correlates with f[r::up] reversed
    if dim == -1:
        kernel = phases.reshape(up, 1, 1, per_phase).repeat(c, 1, 1, 1)  # [C * up, 1, 1, per_phase]
        y = F.conv2d(x, kernel, padding=(0, per_phase - 1), groups=c)  # [B, C * up, H, L + per_phase - 1]
        y = y.reshape(b, c, up, h, -1).permute(0, 1, 3, 4, 2).reshape(b, c, h, -1)
    else:
        kernel = phases.reshape(up, 1, per_phase, 1).repeat(c, 1, 1, 1)
        y = F.conv2d(x, kernel, padding=(per_phase - 1, 0), groups=c)
        y = y.reshape(b, c, up, -1, w).permute(0, 1, 3, 2, 4).reshape(b, c, -1, w)
    # the full convolution's sample t is the reference's output t - (taps - 1 - pad0)
    start, out_len, full = taps - 1 - pad0, length * up + pad0 + pad1 - taps + 1, y.shape[dim]
    crop = [-start, start + out_len - full]
    return F.pad(y, crop if dim == -1 else [0, 0, *crop])


def filtered_lrelu_inference(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None,
                             b: torch.Tensor | None, up: int = 1, down: int = 1,
                             padding: Sequence[int] = (0, 0, 0, 0), gain: float = math.sqrt(2), slope: float = 0.2,
                             clamp: float | None = None) -> torch.Tensor:
    """`filtered_lrelu` as one pass each way: polyphase up-sampling (short convolutions of the input,
    `_up_axis`), the nonlinearity and clamp in place at the high rate, and the down-sampling filter run
    only at the kept samples (a strided convolution). Same numbers to float rounding."""
    if fu is None or fu.ndim != 1 or up == 1:  # no up-sampling, or a 2-D up filter: the reference's way
        return filtered_lrelu(x, fu, fd, b, up, down, padding, gain, slope, clamp)
    if b is not None:
        x = x + b.reshape(1, -1, 1, 1).to(x.dtype)
    g = float(up)  # gain up**2 split over the two axes
    x = _up_axis(x, fu, -1, up, padding[0], padding[1], g)
    x = _up_axis(x, fu, -2, up, padding[2], padding[3], g)
    if slope != 1:
        x = F.leaky_relu_(x, slope)
    if gain != 1:
        x = x.mul_(gain)
    if clamp is not None:
        x = x.clamp_(-clamp, clamp)
    return upfirdn2d(x, fd, down=down)


# ---------------------------------------------------------------- the layer schedule


@dataclass(frozen=True)
class Band:
    """The signal between two layers: `channels` feature maps of `size` pixels a side (margin included),
    sampled at `sampling_rate` samples per image width, band-limited to `cutoff` with a transition band
    of half width `half_width` (both in cycles per image width)."""

    channels: int
    size: int
    sampling_rate: int
    cutoff: float
    half_width: float


def synthesis_schedule(img_resolution: int, img_channels: int, channel_base: int = 32768, channel_max: int = 512,
                       num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                       first_stopband: float = 2**2.1, last_stopband_rel: float = 2**0.3,
                       margin_size: int = 10) -> list[Band]:
    """Bands 0..num_layers (paper §3.2, Fig. 4b and Appendix F): band 0 is the Fourier input's, layer i
    maps band max(i-1, 0) to band i, the last band is the image. Cutoffs f_c and minimum stopbands f_t
    rise geometrically from the first layer to the first critically sampled one and stay there; the
    sampling rate is the smallest power of two above 2 f_t (at most the image resolution); channels
    fall as channel_base / (2 f_c)."""
    if num_layers <= num_critical:
        raise ValueError(f"num_layers ({num_layers}) must exceed num_critical ({num_critical})")
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    progress = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** progress
    stopbands = first_stopband * (last_stopband / first_stopband) ** progress
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + margin_size * 2
    sizes[-2:] = img_resolution  # the last two layers work on the image itself, without a margin
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return [Band(int(channels[i]), int(sizes[i]), int(rates[i]), float(cutoffs[i]), float(half_widths[i]))
            for i in range(num_layers + 1)]


def transform_matrix(translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0) -> torch.Tensor:
    """What to put in `synthesis.input.transform` (or pass as `transform=`) to move the image content by
    `translate` (x right, y down, in image widths) and turn it by `rotate` degrees (counterclockwise as
    displayed), as NVlabs' `gen_images.py --translate --rotate` do: the buffer holds the inverse of that
    image transform. [3, 3]"""
    angle = math.radians(rotate)
    c, s = math.cos(angle), math.sin(angle)
    forward = np.array([[c, s, translate[0]], [-s, c, translate[1]], [0, 0, 1]], dtype=np.float64)
    return torch.as_tensor(np.linalg.inv(forward), dtype=torch.float32)


# ---------------------------------------------------------------- layers


class SynthesisInput(nn.Module):
    """Fourier features (§3.1): `channels` sinusoids with fixed frequencies `freqs` [C, 2] (drawn inside a
    disc of radius `bandwidth`) and phases [C], sampled on a `size` x `size` grid at `sampling_rate`, then
    mixed by a learned [C, C] matrix. The first w, through `affine`, rotates and translates them per image;
    `transform` [3, 3] is a user transform on top (identity by default; see `transform_matrix`)."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, int(size)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        # radius r ~ the 2-D normal's, shrunk by exp(r^2 / 4): denser toward the centre, inside the disc
        direction = torch.randn(channels, 2)
        radius = direction.norm(dim=1, keepdim=True)
        freqs = direction / (radius * (radius.square() / 4).exp()) * bandwidth
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = FullyConnectedLayer(w_dim, 4)
        with torch.no_grad():  # starts as the identity: no rotation, no translation
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0, 0, 0]))
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand(channels) - 0.5)

    def forward(self, w: torch.Tensor, transform: torch.Tensor | None = None) -> torch.Tensor:
        """w [B, w_dim], transform [3, 3] or [B, 3, 3] (default: the buffer) -> [B, C, size, size]."""
        batch = w.shape[0]
        assert w.ndim == 2 and w.shape[1] == self.w_dim, f"w must be [B, {self.w_dim}], got {list(w.shape)}"
        user = self.transform if transform is None else transform.to(w.device, torch.float32)
        assert user.shape in ((3, 3), (batch, 3, 3)), f"transform must be [3, 3] or [{batch}, 3, 3]"
        t = self.affine(w)  # [B, 4]: cos, sin of a rotation, then a translation
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        cos, sin, tx, ty = t.unbind(dim=1)
        zero, one = torch.zeros_like(cos), torch.ones_like(cos)
        # inverse transforms of the image (they act on the sampling grid): rotate, then translate, then the user's
        rotation = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=1).reshape(batch, 3, 3)
        translation = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], dim=1).reshape(batch, 3, 3)
        m = rotation @ translation @ user  # [B, 3, 3]
        phases = self.phases + (self.freqs @ m[:, :2, 2:]).squeeze(2)  # [B, C]
        freqs = self.freqs @ m[:, :2, :2]  # [B, C, 2]
        # a user transform that scales the grid can push frequencies past the band: fade those out
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        # pixel centres in image widths, the image's centre at 0 (exact: s is a power of two)
        g = (torch.arange(self.size, device=w.device, dtype=torch.float32) + (0.5 - self.size / 2)) / self.sampling_rate
        x = (g[None, None, :, None] * freqs[:, None, None, :, 0] + g[None, :, None, None] * freqs[:, None, None, :, 1]
             + phases[:, None, None, :])  # [B, H, W, C]
        x = torch.sin(x * (2 * math.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """One layer (§3.2): modulated convolution, then the filtered leaky ReLU from band `inp` to band `out`.
    The input is divided by its running RMS (`magnitude_ema`, a moving mean of its square kept in training),
    so the signal stays near unit magnitude through the stack. The ToRGB layer is the same with a 1x1 kernel,
    no demodulation, no nonlinearity and no resampling."""

    def __init__(self, w_dim: int, inp: Band, out: Band, is_torgb: bool = False,
                 is_critically_sampled: bool = False, conv_kernel: int = 3, filter_size: int = 6,
                 lrelu_upsampling: int = 2, use_radial_filters: bool = False, conv_clamp: float | None = 256,
                 magnitude_ema_beta: float = 0.999):
        super().__init__()
        self.inp, self.out, self.is_torgb, self.is_critically_sampled = inp, out, is_torgb, is_critically_sampled
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp, self.magnitude_ema_beta = conv_clamp, magnitude_ema_beta
        self.affine = FullyConnectedLayer(w_dim, inp.channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out.channels, inp.channels, self.conv_kernel, self.conv_kernel))
        self.bias = nn.Parameter(torch.zeros(out.channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.weight_gain = 1 / math.sqrt(inp.channels * self.conv_kernel**2)  # ToRGB only (no demodulation)

        # the nonlinearity runs at `lrelu_upsampling` times the higher of the two rates
        tmp_rate = max(inp.sampling_rate, out.sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.up, self.down = _ratio(tmp_rate, inp.sampling_rate), _ratio(tmp_rate, out.sampling_rate)
        up_taps = filter_size * self.up if self.up > 1 and not is_torgb else 1
        down_taps = filter_size * self.down if self.down > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("up_filter", design_lowpass_filter(up_taps, inp.cutoff, inp.half_width * 2, tmp_rate))
        self.register_buffer("down_filter", design_lowpass_filter(down_taps, out.cutoff, out.half_width * 2, tmp_rate,
                                                                  radial=self.down_radial))
        # pad so that out.size samples remain, placed symmetrically (pixel centres, Appendix C.3)
        total = (out.size - 1) * self.down + 1 - (inp.size + self.conv_kernel - 1) * self.up + up_taps + down_taps - 2
        low = (total + self.up) // 2
        self.padding = [low, total - low, low, total - low]

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x [B, I, inp.size, inp.size], w [B, w_dim] -> [B, O, out.size, out.size]."""
        assert x.ndim == 4 and x.shape[1:] == (self.inp.channels, self.inp.size, self.inp.size), \
            f"x must be [B, {self.inp.channels}, {self.inp.size}, {self.inp.size}], got {list(x.shape)}"
        if self.training:
            with torch.no_grad():
                self.magnitude_ema.copy_(x.detach().float().square().mean().lerp(self.magnitude_ema,
                                                                                  self.magnitude_ema_beta))
        styles = self.affine(w)  # [B, I]
        weight = self.weight
        if self.is_torgb:
            styles = styles * self.weight_gain
        else:  # demodulation normalises anyway; pre-scaling keeps the products in range (fp16 in training)
            weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
            styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
        if not torch.is_grad_enabled():
            return self._forward_inference(x, weight, styles)
        x = modulated_conv2d(x * self.magnitude_ema.rsqrt(), weight, styles, demodulate=not self.is_torgb,
                             padding=self.conv_kernel - 1)  # a full convolution: the size grows by k - 1
        if self.is_torgb:
            return filtered_lrelu(x, None, None, self.bias, padding=self.padding, gain=1, slope=1,
                                  clamp=self.conv_clamp)
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias, up=self.up, down=self.down,
                              padding=self.padding, gain=math.sqrt(2), slope=0.2, clamp=self.conv_clamp)

    def _forward_inference(self, x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        """`forward` without autograd: the input's 1 / RMS and the demodulation scale the output of one
        convolution, the bias rides in it, and the filtered leaky ReLU is `filtered_lrelu_inference`."""
        scale = self.magnitude_ema.rsqrt().expand(x.shape[0], weight.shape[0])
        if not self.is_torgb:
            scale = demodulation(weight, styles) * scale
        x = modulated_conv2d_inference(x, weight, styles, scale, self.bias, padding=self.conv_kernel - 1)
        if self.is_torgb:
            return filtered_lrelu(x, None, None, None, padding=self.padding, gain=1, slope=1, clamp=self.conv_clamp)
        return filtered_lrelu_inference(x, self.up_filter, self.down_filter, None, up=self.up, down=self.down,
                                        padding=self.padding, gain=math.sqrt(2), slope=0.2, clamp=self.conv_clamp)


def _ratio(high: float, low: float) -> int:
    ratio = round(high / low)
    if ratio * low != high:
        raise ValueError(f"sampling rates {high} and {low} are not an integer ratio apart")
    return int(ratio)


class SynthesisNetwork(nn.Module):
    """ws -> image: the Fourier input (ws[:, 0]), then num_layers layers and ToRGB (ws[:, 1:]), scaled by
    `output_scale`. Layers are named as NVlabs names them: L{index}_{size}_{channels}."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2**2.1, last_stopband_rel: float = 2**0.3, margin_size: int = 10,
                 output_scale: float = 0.25, num_fp16_res: int = 4, **layer_kwargs):
        super().__init__()
        levels = int(math.log2(img_resolution)) if img_resolution > 0 else 0
        if img_resolution < 4 or 2**levels != img_resolution:
            raise ValueError(f"StyleGAN3 resolution must be a power of two from 4, got {img_resolution}")
        del num_fp16_res  # float32 here
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_layers, self.num_critical, self.output_scale = num_layers, num_critical, output_scale
        self.num_ws = num_layers + 2
        self.bands = synthesis_schedule(img_resolution, img_channels, channel_base, channel_max, num_layers,
                                        num_critical, first_cutoff, first_stopband, last_stopband_rel, margin_size)
        first = self.bands[0]
        self.input = SynthesisInput(w_dim, first.channels, first.size, first.sampling_rate, first.cutoff)
        self.layer_names = []
        for idx, out in enumerate(self.bands):
            layer = SynthesisLayer(w_dim, self.bands[max(idx - 1, 0)], out, is_torgb=idx == num_layers,
                                   is_critically_sampled=idx >= num_layers - num_critical, **layer_kwargs)
            name = f"L{idx}_{out.size}_{out.channels}"
            self.add_module(name, layer)
            self.layer_names.append(name)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", transform: torch.Tensor | None = None
                ) -> torch.Tensor:
        """ws [B, num_ws, w_dim] -> image [B, img_channels, R, R] on NVlabs' scale (about [-1, 1]).
        StyleGAN3 has no noise inputs; `noise_mode` is accepted so that shows drive both alike."""
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), \
            f"ws must be [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0], transform)
        for name, w in zip(self.layer_names, ws[1:], strict=True):
            x = getattr(self, name)(x, w)
        return x * self.output_scale if self.output_scale != 1 else x


class Generator(nn.Module):
    """StyleGAN3 generator: `mapping` (z, c -> ws) then `synthesis` (ws -> image).

    Constructor arguments are NVlabs' and are kept in `.config`: mapping_kwargs (num_layers=2,
    lr_multiplier=0.01, w_avg_beta=0.998) and, flat, the synthesis kwargs: channel_base, channel_max,
    num_layers, num_critical, first_cutoff, first_stopband, last_stopband_rel, margin_size, output_scale,
    num_fp16_res and the layers' conv_kernel (3 for T, 1 for R), filter_size, lrelu_upsampling,
    use_radial_filters (R), conv_clamp, magnitude_ema_beta.
    """

    # devices where `[model] compile = "auto"` compiles it (engine/generators/speed.py): measured faster
    # there, the same frames within 1e-4 (docs/performance.md, issue 20)
    compile_pays_on = ("cpu",)

    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, img_resolution: int = 1024,
                 img_channels: int = 3, mapping_kwargs: dict | None = None, **synthesis_kwargs):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution = self.resolution = img_resolution
        self.img_channels = img_channels
        self.config = stylegan2._json_ready(dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution,
                                       img_channels=img_channels, mapping_kwargs=mapping_kwargs, **synthesis_kwargs))
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **{**MAPPING_DEFAULTS, **mapping_kwargs})

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const",
                transform: torch.Tensor | None = None) -> torch.Tensor:
        """z [B, z_dim], c [B, c_dim] (conditional models only), transform [3, 3] or [B, 3, 3] (default:
        the `synthesis.input.transform` buffer) -> image [B, 3, R, R] in [0, 1]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.render(ws, noise_mode, transform)

    def render(self, ws: torch.Tensor, noise_mode: str = "const", transform: torch.Tensor | None = None
               ) -> torch.Tensor:
        """ws [B, num_ws, w_dim] -> image [B, 3, R, R] in [0, 1] (one channel repeated to grey, alpha dropped)."""
        img = self.synthesis(ws, noise_mode, transform)
        if img.shape[1] == 1:
            img = img.repeat(1, 3, 1, 1)
        return ((img[:, :3] + 1) * 0.5).clamp(0, 1)
