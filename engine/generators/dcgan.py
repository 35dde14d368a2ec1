"""DCGAN generator and discriminator (Radford et al. 2016, arXiv:1511.06434).

The generator keeps the PyTorch examples' key layout (`main.0.weight`, ... in one `nn.Sequential`)
so that their `netG_*.pth` files load without renaming. The discriminator is the mirror image; it is
shipped beside the default model so that filters can reuse what it learned.

Shapes: z [B, z_dim] -> image [B, 3, R, R] in [0, 1]; R is a power of two >= 8.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _check_resolution(resolution: int) -> int:
    levels = int(math.log2(resolution)) if resolution > 0 else 0
    if resolution < 8 or 2**levels != resolution:
        raise ValueError(f"DCGAN resolution must be a power of two >= 8, got {resolution}")
    return levels


class Generator(nn.Module):
    """z -> 4x4 projection -> (transposed conv, BN, ReLU) per doubling -> tanh image."""

    def __init__(self, z_dim: int = 100, resolution: int = 64, base_channels: int = 64,
                 max_channels: int = 512, out_channels: int = 3):
        super().__init__()
        levels = _check_resolution(resolution)
        self.z_dim, self.resolution = z_dim, resolution
        self.config = dict(z_dim=z_dim, resolution=resolution, base_channels=base_channels,
                           max_channels=max_channels, out_channels=out_channels)
        # channels at 4x4, 8x8, ... R/2; the output layer maps the last to RGB
        widths = [min(base_channels * 2 ** (levels - 3 - i), max_channels) for i in range(levels - 2)]
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, widths[0], 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(True)]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], out_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """truncation_psi < 1 pulls z toward the prior's mean (zero): DCGAN has no w space, so this is
        the truncation trick in z, as in the DCGAN-era interpolation demos."""
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [B, {self.z_dim}], got {list(z.shape)}"
        x = self.main((z * truncation_psi)[:, :, None, None])  # [B, 3, R, R] in [-1, 1]
        return (x + 1) * 0.5


class MinibatchStd(nn.Module):
    """ProGAN's minibatch standard deviation (Karras et al. 2018, arXiv:1710.10196, section 3): one channel more,
    the spread of the features over a group of `group` images, averaged to one number per group. A generator that
    draws the same few pictures gives itself away by a small spread, so the discriminator can punish a lack of
    variety, which a per-image discriminator cannot see. Groups are images i, i + B/G, ...; a batch not divisible
    by `group` uses the largest group size that divides it (1 for one image: spread 0)."""

    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = min(self.group, b)
        while b % g:
            g -= 1
        y = x.reshape(g, b // g, c, h, w)
        spread = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt().mean(dim=(1, 2, 3))  # [B/G]
        return torch.cat([x, spread.reshape(1, -1, 1, 1, 1).expand(g, -1, 1, h, w).reshape(b, 1, h, w)], dim=1)


class Discriminator(nn.Module):
    """image [B, 3, R, R] in [0, 1] -> logit [B]; strided convs with LeakyReLU, no normalisation
    (spectral norm is applied by the trainer only while training, then folded into the weights).
    `mbstd_group` > 0 adds a `MinibatchStd` channel before the last conv (at 4 x 4)."""

    def __init__(self, resolution: int = 64, base_channels: int = 64, max_channels: int = 512,
                 in_channels: int = 3, mbstd_group: int = 0):
        super().__init__()
        levels = _check_resolution(resolution)
        if not 0 <= mbstd_group <= 64:
            raise ValueError(f"mbstd_group must be 0 (off) to 64, got {mbstd_group}")
        self.resolution = resolution
        self.config = dict(resolution=resolution, base_channels=base_channels,
                           max_channels=max_channels, in_channels=in_channels)
        if mbstd_group:  # absent when off: files written before the option keep their config
            self.config["mbstd_group"] = mbstd_group
        widths = [min(base_channels * 2**i, max_channels) for i in range(levels - 2)]  # R/2 ... 4
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        if mbstd_group:
            layers += [MinibatchStd(mbstd_group)]
        layers += [nn.Conv2d(widths[-1] + (1 if mbstd_group else 0), 1, 4, 1, 0)]
        self.main = nn.Sequential(*layers)

    def features(self, image: torch.Tensor, depth: int | None = None) -> list[torch.Tensor]:
        """Activations after the first `depth` LeakyReLUs (all by default), coarse last: what DeepDream
        and inspection read. Any image size works as long as the layers asked for fit in it."""
        x, out = image * 2 - 1, []
        for layer in self.main:
            if depth is not None and len(out) >= depth:
                break
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out.append(x)
        return out

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        assert image.ndim == 4 and image.shape[1:] == (self.config["in_channels"], self.resolution,
                                                      self.resolution), f"bad image shape {list(image.shape)}"
        return self.main(image * 2 - 1).flatten()
