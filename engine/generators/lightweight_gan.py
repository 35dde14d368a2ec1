"""lucidrains' lightweight-gan generator (FastGAN: Liu et al. 2021, "Towards Faster and Stabilized GAN
Training for High-fidelity Few-shot Image Synthesis", arXiv:2101.04775), in plain PyTorch, written here.

Weight format: the package's `models/<name>/model_N.pt`, `{'GAN': state_dict, 'version': ...}` (read with
`torch.load(weights_only=True)` by `engine.generators.lucidrains`); the generator is `GAN.GE` (the EMA copy it
samples with) or `GAN.G`. This module keeps the package's key names (without the `GE.` prefix):

  z [B, latent] -> initial_conv (transposed 4x4 conv, BN, GLU) -> L2-normalised [B, latent, 4, 4]
  per doubling: (attention: ChanNorm + linear/local attention, residual) -> pixel-shuffle up, blur [1 2 1],
  4x4 'same' conv, noise, BN, GLU; skip-layer excitation: a layer at 16..128 px gates the layer at
  256..2048 px by a channel vector (global context or FCA-DCT pooling) -> out_conv 3x3.

The package's Noise adds fresh `randn` noise at every call, so its pictures flicker even for a fixed z; here
the noise is a fixed map per layer (seeded by the layer's index; `noise_mode = "none"` leaves it out), so
a frame is a function of z alone. Output: the package clamps its images to [0, 1]; so does `forward`.
Greyscale models are repeated to RGB; 'transparent' (RGBA) ones lose their alpha.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_LATENT, MAX_LAYERS, MAX_CHANNELS = 4096, 10, 4096
HEADS, DIM_HEAD = 8, 64  # LinearAttention's defaults: the package never passes others


class ChanNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) / (var + self.eps).sqrt() * self.g + self.b


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.fn, self.norm = fn, ChanNorm(dim)

    def forward(self, x):
        return self.fn(self.norm(x))


class DepthWiseConv2d(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(dim_in, dim_in, 3, padding=1, groups=dim_in, bias=False),
                                 nn.Conv2d(dim_in, dim_out, 1, bias=False))

    def forward(self, x):
        return self.net(x)


class LinearAttention(nn.Module):
    """Linear (global) attention and 3x3-neighbourhood full attention side by side, 8 heads of 64."""

    def __init__(self, dim: int):
        super().__init__()
        inner = HEADS * DIM_HEAD
        self.scale = DIM_HEAD**-0.5
        self.to_lin_q = nn.Conv2d(dim, inner, 1, bias=False)
        self.to_lin_kv = DepthWiseConv2d(dim, inner * 2)
        self.to_q = nn.Conv2d(dim, inner, 1, bias=False)
        self.to_kv = nn.Conv2d(dim, inner * 2, 1, bias=False)
        self.to_out = nn.Conv2d(inner * 2, dim, 1)

    def forward(self, fmap):
        b, _, x, y = fmap.shape
        h, d, n = HEADS, DIM_HEAD, x * y

        def heads_last(t):  # [B, h*d, X, Y] -> [B*h, n, d]
            return t.reshape(b, h, d, n).transpose(2, 3).reshape(b * h, n, d)

        def back(t):  # [B*h, n, d] -> [B, h*d, X, Y]
            return t.reshape(b, h, n, d).transpose(2, 3).reshape(b, h * d, x, y)

        lin_k, lin_v = self.to_lin_kv(fmap).chunk(2, dim=1)
        lin_q, lin_k, lin_v = heads_last(self.to_lin_q(fmap)), heads_last(lin_k), heads_last(lin_v)
        lin_q = lin_q.softmax(dim=-1) * self.scale
        lin_k = lin_k.softmax(dim=-2)
        lin_out = back(lin_q @ (lin_k.transpose(1, 2) @ lin_v))  # [B, h*d, X, Y]

        k, v = self.to_kv(fmap).chunk(2, dim=1)
        q = self.to_q(fmap).reshape(b * h, d, n).transpose(1, 2) * self.scale  # [B*h, n, d]
        k, v = (F.unfold(t.reshape(b * h, d, x, y), 3, padding=1).reshape(b * h, d, 9, n).permute(0, 3, 2, 1)
                for t in (k, v))  # [B*h, n, 9, d]
        sim = (k @ q.unsqueeze(-1)).squeeze(-1)  # [B*h, n, 9]
        attn = (sim - sim.amax(dim=-1, keepdim=True)).softmax(dim=-1)
        full_out = back((attn.unsqueeze(-2) @ v).squeeze(-2))
        return self.to_out(torch.cat([F.gelu(lin_out), full_out], dim=1))


class PixelShuffleUpsample(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(dim, dim * 4, 1), nn.SiLU(), nn.PixelShuffle(2))

    def forward(self, x):
        return self.net(x)


class Blur(nn.Module):
    """kornia.filter2d(x, outer(f, f), normalized=True): reflect padding, the taps stored in the file."""

    def __init__(self):
        super().__init__()
        self.register_buffer("f", torch.tensor([1.0, 2.0, 1.0]))

    def forward(self, x):
        k = self.f[:, None] * self.f[None, :]
        k = (k / k.sum()).expand(x.shape[1], 1, 3, 3).to(x.dtype)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k, groups=x.shape[1])


class ConvSame(nn.Sequential):
    """The package's Conv2dSame for its 4x4 kernels: zero padding 2 before, 1 after."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__(nn.ZeroPad2d((2, 1, 2, 1)), nn.Conv2d(dim_in, dim_out, 4))


class Noise(nn.Module):
    def __init__(self, index: int):
        super().__init__()
        self.index, self.mode = index, "const"
        self.weight = nn.Parameter(torch.zeros(1))
        self._noise: torch.Tensor | None = None

    def forward(self, x):
        if self.mode == "none":
            return x
        if self._noise is None or self._noise.shape[-2:] != x.shape[-2:] or self._noise.device != x.device:
            gen = torch.Generator().manual_seed(self.index)
            self._noise = torch.randn(1, 1, *x.shape[-2:], generator=gen).to(x.device)
        return x + self.weight * self._noise.to(x.dtype)


class GlobalContext(nn.Module):
    def __init__(self, chan_in: int, chan_out: int):
        super().__init__()
        self.to_k = nn.Conv2d(chan_in, 1, 1)
        mid = max(3, chan_out // 2)
        self.net = nn.Sequential(nn.Conv2d(chan_in, mid, 1), nn.LeakyReLU(0.1), nn.Conv2d(mid, chan_out, 1),
                                 nn.Sigmoid())

    def forward(self, x):
        context = self.to_k(x).flatten(2).softmax(dim=-1)  # [B, 1, HW]
        pooled = (x.flatten(2) @ context.transpose(1, 2))[..., None]  # [B, C, 1, 1]
        return self.net(pooled)


class FCANet(nn.Module):
    """Frequency channel attention (Qin et al. 2021, arXiv:2012.11879): fixed DCT pooling (the stored
    `dct_weights`), then the same gate as GlobalContext (reduction 4)."""

    def __init__(self, chan_in: int, chan_out: int, width: int):
        super().__init__()
        self.register_buffer("dct_weights", torch.zeros(1, chan_in, width, width))
        mid = max(3, chan_out // 4)
        self.net = nn.Sequential(nn.Conv2d(chan_in, mid, 1), nn.LeakyReLU(0.1), nn.Conv2d(mid, chan_out, 1),
                                 nn.Sigmoid())

    def forward(self, x):
        return self.net((x * self.dct_weights).sum(dim=(2, 3), keepdim=True))


def sle_map(levels: int) -> dict[int, int]:
    """Skip-layer excitation: the layer at res (output 2^(res+1) px) gates the input of layer map[res]."""
    return {a: b for a, b in ((3, 7), (4, 8), (5, 9), (6, 10)) if a <= levels and b <= levels}


class Generator(nn.Module):
    """z [B, latent_dim] -> image [B, 3, R, R] in [0, 1].

    `channels[i]`: layer i's output width (the package derives them from fmap_max, fmap_inverse_coef);
    `attn_res_layers`: widths in px whose layer input gets attention; `sle`: "global_context" or "fca"."""

    def __init__(self, latent_dim: int = 256, image_size: int = 256, channels: list[int] | None = None,
                 attn_res_layers: list[int] | None = None, sle: str = "global_context", out_channels: int = 3):
        super().__init__()
        levels = int(math.log2(image_size)) if isinstance(image_size, int) and image_size > 0 else 0
        if not 8 <= image_size <= 2 ** (MAX_LAYERS + 2) or 2**levels != image_size:
            raise ValueError(f"image_size must be a power of two 8..{2 ** (MAX_LAYERS + 2)}, got {image_size}")
        if not isinstance(latent_dim, int) or not 2 <= latent_dim <= MAX_LATENT:
            raise ValueError(f"latent_dim must be 2..{MAX_LATENT}, got {latent_dim}")
        n = levels - 2
        channels = list(channels) if channels is not None else [
            3 if res >= 8 else min(2 ** (12 - res), 512) for res in range(2, n + 2)]  # the package's defaults
        if len(channels) != n or not all(isinstance(c, int) and 1 <= c <= MAX_CHANNELS for c in channels):
            raise ValueError(f"channels must be {n} widths 1..{MAX_CHANNELS}, got {channels}")
        if sle not in ("global_context", "fca") or out_channels not in (1, 3, 4):
            raise ValueError(f"sle must be global_context or fca and out_channels 1, 3 or 4, got {sle}, {out_channels}")
        attn = sorted(attn_res_layers or [])
        self.config = dict(latent_dim=latent_dim, image_size=image_size, channels=channels, attn_res_layers=attn,
                           sle=sle, out_channels=out_channels)
        self.z_dim, self.resolution, self.img_channels = latent_dim, image_size, 3
        self.initial_conv = nn.Sequential(nn.ConvTranspose2d(latent_dim, latent_dim * 2, 4),
                                          nn.BatchNorm2d(latent_dim * 2), nn.GLU(dim=1))
        widths = [latent_dim, *channels]
        self.sle_map = sle_map(levels)
        self.layers = nn.ModuleList()
        for i, (res, c_in, c_out) in enumerate(zip(range(2, n + 2), widths, widths[1:])):
            excite = None
            if res in self.sle_map:
                target = widths[self.sle_map[res] - 2]  # the output width of the layer at res map[res] - 1
                excite = (FCANet(c_out, target, 2 ** (res + 1)) if sle == "fca" else GlobalContext(c_out, target))
            self.layers.append(nn.ModuleList([
                nn.Sequential(PixelShuffleUpsample(c_in), Blur(), ConvSame(c_in, c_out * 2), Noise(i),
                              nn.BatchNorm2d(c_out * 2), nn.GLU(dim=1)),
                excite,
                PreNorm(c_in, LinearAttention(c_in)) if 2**res in attn else None]))
        self.out_conv = nn.Conv2d(widths[-1], out_channels, 3, padding=1)

    @property
    def noise_mode(self) -> str:
        return next(m.mode for m in self.modules() if isinstance(m, Noise))

    @noise_mode.setter
    def noise_mode(self, mode: str) -> None:
        for m in self.modules():
            if isinstance(m, Noise):
                m.mode = mode

    def synthesize(self, z: torch.Tensor) -> torch.Tensor:
        """The package's `Generator.forward` (with fixed noise): z [B, latent] -> out_conv output, unclamped."""
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [B, {self.z_dim}], got {list(z.shape)}"
        x = F.normalize(self.initial_conv(z[:, :, None, None]), dim=1)  # [B, latent, 4, 4]
        gates: dict[int, torch.Tensor] = {}
        for res, (up, excite, attn) in zip(range(2, len(self.layers) + 2), self.layers):
            if attn is not None:
                x = attn(x) + x
            x = up(x)  # [B, C, 2^(res+1), 2^(res+1)]
            if excite is not None:
                gates[self.sle_map[res]] = excite(x)
            if res + 1 in gates:
                x = x * gates[res + 1]
        return self.out_conv(x)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """truncation_psi scales z toward 0 (the package samples plain N(0, 1) and has no truncation)."""
        x = self.synthesize(z * truncation_psi).clamp(0, 1)
        if x.shape[1] == 1:
            return x.expand(-1, 3, -1, -1)
        return x[:, :3]
