"""lucidrains' stylegan2-pytorch generator (a StyleGAN2 after Karras et al. 2020, "Analyzing and Improving the
Image Quality of StyleGAN", arXiv:1912.04958, with the package's own simplifications), in plain PyTorch,
written here.

Weight format: the package's `models/<name>/model_N.pt`, `{'GAN': state_dict, 'version': ...}` (read with
`torch.load(weights_only=True)` by `engine.generators.lucidrains`); the style network is `GAN.SE` and the
generator `GAN.GE` (the EMA copies it samples with), else `GAN.S` / `GAN.G`. This module keeps the package's
key names under `mapping.` (for S) and `synthesis.` (for G):

  z [B, latent] -> mapping: L2-normalise, `style_depth` x (EqualLinear with lr_mul, LeakyReLU 0.2) -> w
  w per block [B, num_ws, latent] -> synthesis: a learned 4x4 constant (or, no_const, a transposed conv of
  the blocks' mean w), 3x3 conv; per block: (attention + feed-forward, residual) -> bilinear 2x up ->
  two modulated 3x3 convs (the style adds 1 to the weights' scale), each + noise, LeakyReLU 0.2 ->
  modulated 1x1 to RGB added to the previous RGB, bilinear 2x up and blur [1 2 1] -> RGB in about [0, 1].

Noise: the package draws one uniform [0, 1) noise image [B, R, R, 1] per call, which every block crops to its
size and maps by Linear(1, C) (with a bias), so its pictures flicker even for a fixed w. Here the image is
fixed (`torch.rand` from `torch.Generator().manual_seed(NOISE_SEED)`, the same for every sample and call), so
a frame is a function of w alone; `noise_mode="none"` feeds zeros (only the noise layers' bias stays),
"random" draws it anew like the package; `noise_gain` (style.noise_strength) scales the image.
Truncation: the package pulls w toward the mean of 2000 random styles, drawn anew each run; here `w_avg` is
the mean over AVG_SAMPLES styles of seeded z, computed once at conversion and saved with the model.
Output: the package clamps its images to [0, 1]; so does `render`. 'transparent' (RGBA) models lose alpha.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_LATENT, MAX_DEPTH, MAX_CHANNELS = 4096, 32, 4096
MIN_SIZE, MAX_SIZE = 8, 2048
HEADS, DIM_HEAD = 8, 64  # LinearAttention's defaults: the package never passes others
NOISE_SEED, AVG_SAMPLES = 0, 2000
NOISE_MODES = ("const", "random", "none")


class EqualLinear(nn.Module):
    def __init__(self, dim: int, lr_mul: float):
        super().__init__()
        self.lr_mul = lr_mul
        self.weight = nn.Parameter(torch.zeros(dim, dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):  # [B, dim] -> [B, dim]
        return F.linear(x, self.weight * self.lr_mul, bias=self.bias * self.lr_mul)


class Mapping(nn.Module):
    """The package's StyleVectorizer, plus what the show's style path asks of a mapping network: z [B, latent]
    -> ws [B, num_ws, latent] (the same w for every block), truncation toward `w_avg`."""

    def __init__(self, latent_dim: int, depth: int, num_ws: int, lr_mul: float):
        super().__init__()
        self.z_dim = self.w_dim = latent_dim
        self.c_dim, self.num_layers, self.num_ws = 0, depth, num_ws
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [EqualLinear(latent_dim, lr_mul), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        self.register_buffer("w_avg", torch.zeros(latent_dim))

    def style(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, latent] -> w [B, latent]: the package's `S(z)`."""
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [B, {self.z_dim}], got {list(z.shape)}"
        return self.net(F.normalize(z.float(), dim=1))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """z [B, latent] -> ws [B, num_ws, latent]; psi < 1 moves the first `truncation_cutoff` ws (all when
        None) toward w_avg, as the package's `truncate_style` does (psi (w - av) + av)."""
        if c is not None:
            raise ValueError("this model is not conditional")
        ws = self.style(z)[:, None].repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            n = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :n] = self.w_avg.lerp(ws[:, :n], truncation_psi)
        return ws


class ChanNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1, 1))

    def forward(self, x):
        var = torch.var(x, dim=1, unbiased=False, keepdim=True)
        mean = torch.mean(x, dim=1, keepdim=True)
        return (x - mean) / (var + self.eps).sqrt() * self.g + self.b


class Residual(nn.Module):
    """x + fn(norm(x)): the package's Residual(PreNorm(dim, fn)), its key names kept (`fn.norm`, `fn.fn`)."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.fn = nn.Module()
        self.fn.norm, self.fn.fn = ChanNorm(dim), fn

    def forward(self, x):
        return self.fn.fn(self.fn.norm(x)) + x


class LinearAttention(nn.Module):
    """Linear attention over all pixels, 8 heads of 64; keys and values from a depthwise 3x3 then 1x1 conv."""

    def __init__(self, dim: int):
        super().__init__()
        inner = HEADS * DIM_HEAD
        self.scale = DIM_HEAD**-0.5
        self.to_q = nn.Conv2d(dim, inner, 1, bias=False)
        self.to_kv = nn.Module()
        self.to_kv.net = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
                                       nn.Conv2d(dim, inner * 2, 1, bias=False))
        self.to_out = nn.Conv2d(inner, dim, 1)

    def forward(self, fmap):  # [B, C, X, Y] -> [B, C, X, Y]
        b, _, x, y = fmap.shape
        h, d, n = HEADS, DIM_HEAD, x * y

        def heads_last(t):  # [B, h*d, X, Y] -> [B*h, n, d]
            return t.reshape(b, h, d, n).transpose(2, 3).reshape(b * h, n, d)

        k, v = self.to_kv.net(fmap).chunk(2, dim=1)
        q, k, v = heads_last(self.to_q(fmap)), heads_last(k), heads_last(v)
        q = q.softmax(dim=-1) * self.scale
        k = k.softmax(dim=-2)
        context = torch.einsum("bnd,bne->bde", k, v)  # [B*h, d, d]
        out = torch.einsum("bnd,bde->bne", q, context)  # [B*h, n, d]
        out = out.reshape(b, h, n, d).transpose(2, 3).reshape(b, h * d, x, y)
        return self.to_out(F.gelu(out))


def attention_and_feed_forward(dim: int) -> nn.Sequential:
    return nn.Sequential(Residual(dim, LinearAttention(dim)),
                         Residual(dim, nn.Sequential(nn.Conv2d(dim, dim * 2, 1), nn.LeakyReLU(0.2),
                                                     nn.Conv2d(dim * 2, dim, 1))))


class Blur(nn.Module):
    """kornia.filter2d(x, outer(f, f), normalized=True): reflect padding, the taps stored in the file."""

    def __init__(self):
        super().__init__()
        self.register_buffer("f", torch.tensor([1.0, 2.0, 1.0]))

    def forward(self, x):
        k = self.f[None, :] * self.f[:, None]
        k = (k / k.sum()).expand(x.shape[1], 1, 3, 3).to(x.dtype)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k, groups=x.shape[1])


class Upsample(nn.Module):
    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def modulated_conv(x: torch.Tensor, weight: torch.Tensor, style: torch.Tensor, demod: bool) -> torch.Tensor:
    """The package's Conv2DMod: x [B, I, H, W], weight [O, I, k, k], style [B, I] -> [B, O, H, W] ('same')."""
    b, _, h, w = x.shape
    o, _, k, _ = weight.shape
    weights = weight[None] * (style[:, None, :, None, None] + 1)  # [B, O, I, k, k]
    if demod:
        weights = weights * torch.rsqrt((weights**2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    y = F.conv2d(x.reshape(1, -1, h, w), weights.reshape(b * o, *weights.shape[2:]), padding=(k - 1) // 2, groups=b)
    return y.reshape(b, o, h, w)


class ModConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(c_out, c_in, kernel, kernel))


class RGBBlock(nn.Module):
    def __init__(self, latent_dim: int, c_in: int, upsample: bool, out_channels: int):
        super().__init__()
        self.to_style = nn.Linear(latent_dim, c_in)
        self.conv = ModConv(c_in, out_channels, 1)
        self.upsample = nn.Sequential(Upsample(), Blur()) if upsample else None

    def forward(self, x, prev_rgb, w):
        x = modulated_conv(x, self.conv.weight, self.to_style(w), demod=False)
        if prev_rgb is not None:
            x = x + prev_rgb
        return self.upsample(x) if self.upsample is not None else x


class GeneratorBlock(nn.Module):
    def __init__(self, latent_dim: int, c_in: int, c_out: int, upsample: bool, upsample_rgb: bool,
                 out_channels: int):
        super().__init__()
        self.upsample = upsample
        self.to_style1, self.to_noise1 = nn.Linear(latent_dim, c_in), nn.Linear(1, c_out)
        self.conv1 = ModConv(c_in, c_out, 3)
        self.to_style2, self.to_noise2 = nn.Linear(latent_dim, c_out), nn.Linear(1, c_out)
        self.conv2 = ModConv(c_out, c_out, 3)
        self.to_rgb = RGBBlock(latent_dim, c_out, upsample_rgb, out_channels)

    def forward(self, x, prev_rgb, w, noise):
        """x [B, I, H, W], w [B, latent], noise [B, R, R, 1] -> x [B, O, H', W'], rgb."""
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        noise = noise[:, :x.shape[2], :x.shape[3], :]
        noise1 = self.to_noise1(noise).permute(0, 3, 2, 1)  # [B, O, W, H]: the package's transpose
        noise2 = self.to_noise2(noise).permute(0, 3, 2, 1)
        x = F.leaky_relu(modulated_conv(x, self.conv1.weight, self.to_style1(w), True) + noise1, 0.2)
        x = F.leaky_relu(modulated_conv(x, self.conv2.weight, self.to_style2(w), True) + noise2, 0.2)
        return x, self.to_rgb(x, prev_rgb, w)


class NoiseImage(nn.Module):
    """The one noise image every block crops: fixed per (size, device), fresh, or zeros; times noise_gain."""

    def __init__(self, size: int):
        super().__init__()
        self.size, self.noise_gain = size, 1.0
        self._fixed: torch.Tensor | None = None

    def forward(self, batch: int, device, mode: str) -> torch.Tensor:  # -> [batch, R, R, 1]
        if mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {mode!r}")
        shape = (1, self.size, self.size, 1)
        if mode == "none":
            return torch.zeros(shape, device=device).expand(batch, -1, -1, -1)
        if mode == "random":
            return torch.rand((batch, *shape[1:]), device=device) * self.noise_gain
        if self._fixed is None or self._fixed.device != torch.device(device):
            self._fixed = torch.rand(shape, generator=torch.Generator().manual_seed(NOISE_SEED)).to(device)
        return (self._fixed * self.noise_gain).expand(batch, -1, -1, -1)


class Synthesis(nn.Module):
    """The package's Generator: ws [B, num_ws, latent] and a noise image [B, R, R, 1] -> RGB(A) [B, C, R, R]."""

    def __init__(self, image_size: int, latent_dim: int, filters: list[int], attn_layers: list[int],
                 out_channels: int, no_const: bool):
        super().__init__()
        self.num_layers = len(filters) - 1
        self.no_const = no_const
        if no_const:
            self.to_initial_block = nn.ConvTranspose2d(latent_dim, filters[0], 4, 1, 0, bias=False)
        else:
            self.initial_block = nn.Parameter(torch.zeros(1, filters[0], 4, 4))
        self.initial_conv = nn.Conv2d(filters[0], filters[0], 3, padding=1)
        self.blocks, self.attns = nn.ModuleList(), nn.ModuleList()
        for ind, (c_in, c_out) in enumerate(zip(filters[:-1], filters[1:])):
            self.attns.append(attention_and_feed_forward(c_in) if self.num_layers - ind in attn_layers else None)
            self.blocks.append(GeneratorBlock(latent_dim, c_in, c_out, upsample=ind != 0,
                                              upsample_rgb=ind != self.num_layers - 1, out_channels=out_channels))
        self.noise = NoiseImage(image_size)

    def forward(self, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.no_const:
            x = self.to_initial_block(ws.mean(dim=1)[:, :, None, None])
        else:
            x = self.initial_block.expand(ws.shape[0], -1, -1, -1)
        x = self.initial_conv(x)
        rgb = None
        for w, block, attn in zip(ws.unbind(dim=1), self.blocks, self.attns):
            if attn is not None:
                x = attn(x)
            x, rgb = block(x, rgb, w, noise)
        return rgb


def filters_for(image_size: int, network_capacity: int, fmap_max: int) -> list[int]:
    """The package's widths: the initial block's, then each block's output."""
    n = int(math.log2(image_size)) - 1
    widths = [min(network_capacity * 2 ** (i + 1), fmap_max) for i in range(n)][::-1]
    return [widths[0], *widths]


class Generator(nn.Module):
    """z [B, latent_dim] -> image [B, 3, R, R] in [0, 1]; `mapping` (z -> ws) and `render` (ws -> image) for
    the style path (truncation, mixing, directions).

    Arguments are the package's (`StyleGAN2(image_size, latent_dim, fmap_max, style_depth, network_capacity,
    transparent, attn_layers, no_const, lr_mlp)`): `attn_layers` counts blocks from the last (1) to the first
    (log2(image_size) - 1), as the package does."""

    def __init__(self, image_size: int = 128, latent_dim: int = 512, style_depth: int = 8,
                 network_capacity: int = 16, fmap_max: int = 512, attn_layers: list[int] | None = None,
                 transparent: bool = False, no_const: bool = False, lr_mlp: float = 0.1):
        super().__init__()
        if not isinstance(image_size, int) or not MIN_SIZE <= image_size <= MAX_SIZE or \
                image_size & (image_size - 1):
            raise ValueError(f"image_size must be a power of two {MIN_SIZE}..{MAX_SIZE}, got {image_size}")
        for name, value, top in (("latent_dim", latent_dim, MAX_LATENT), ("style_depth", style_depth, MAX_DEPTH),
                                 ("network_capacity", network_capacity, MAX_CHANNELS),
                                 ("fmap_max", fmap_max, MAX_CHANNELS)):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
                raise ValueError(f"{name} must be 1..{top}, got {value}")
        if not (isinstance(lr_mlp, int | float) and math.isfinite(lr_mlp) and 0 < lr_mlp <= 100):
            raise ValueError(f"lr_mlp must be a number in (0, 100], got {lr_mlp}")
        n = int(math.log2(image_size)) - 1
        attn = sorted(attn_layers or [])
        if not all(isinstance(a, int) and 1 <= a <= n for a in attn):
            raise ValueError(f"attn_layers must be block numbers 1..{n}, got {attn}")
        self.config = dict(image_size=image_size, latent_dim=latent_dim, style_depth=style_depth,
                           network_capacity=network_capacity, fmap_max=fmap_max, attn_layers=attn,
                           transparent=bool(transparent), no_const=bool(no_const), lr_mlp=float(lr_mlp))
        self.z_dim = self.w_dim = latent_dim
        self.c_dim, self.num_ws = 0, n
        self.resolution, self.img_channels = image_size, 3
        self.mapping = Mapping(latent_dim, style_depth, n, lr_mlp)
        self.synthesis = Synthesis(image_size, latent_dim, filters_for(image_size, network_capacity, fmap_max),
                                   attn, 4 if transparent else 3, bool(no_const))

    @torch.no_grad()
    def estimate_w_avg(self) -> None:
        """w_avg = the mean style of AVG_SAMPLES seeded z (the package's `av`, but the same every time)."""
        z = torch.randn(AVG_SAMPLES, self.z_dim, generator=torch.Generator().manual_seed(NOISE_SEED))
        self.mapping.w_avg.copy_(self.mapping.style(z.to(self.mapping.w_avg.device)).mean(dim=0))

    def raw(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """ws [B, num_ws, latent] -> the package's `G(styles, noise)` output [B, 3 or 4, R, R], unclamped."""
        assert ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim), \
            f"ws must be [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}"
        noise = self.synthesis.noise(ws.shape[0], ws.device, noise_mode)
        return self.synthesis(ws.float(), noise)

    def render(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """ws [B, num_ws, latent] -> image [B, 3, R, R] in [0, 1] (the package clamps too; alpha dropped)."""
        return self.raw(ws, noise_mode)[:, :3].clamp(0, 1)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const") -> torch.Tensor:
        return self.render(self.mapping(z, c, truncation_psi, truncation_cutoff), noise_mode)
