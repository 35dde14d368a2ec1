"""StyleGAN2's residual discriminator (Karras et al. 2020, arXiv:1912.04958, Fig. 7c), small and plain:
equalized-learning-rate convolutions (the generator's `Conv2dLayer` weight scaling), FIR low-pass before
every 2x down-sampling, a minibatch standard-deviation feature (Karras et al. 2018) and two dense layers.

It exists to train and fine-tune `engine.generators.stylegan2.Generator`; it is not a port of NVlabs'
discriminator and does not load their pickles' `D`. Model files name it `stylegan2-discriminator`.

Shapes: image [B, 3, R, R] in [0, 1] -> logit [B]; `features(image)` gives the activation of every
block, fine to coarse (what the novelty inspector compares).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.generators.stylegan2 import FullyConnectedLayer, bias_act, fir_filter, upfirdn2d


class Conv(nn.Module):
    """Equalized-lr convolution; with down=2 the input is low-pass filtered, then strided."""

    def __init__(self, c_in: int, c_out: int, kernel: int, activation: str = "lrelu", bias: bool = True,
                 down: int = 1):
        super().__init__()
        self.activation, self.down, self.padding = activation, down, kernel // 2
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.weight_gain = 1 / math.sqrt(c_in * kernel * kernel)
        self.register_buffer("resample_filter", fir_filter([1, 3, 3, 1]))

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        if self.down > 1:
            x = upfirdn2d(x, self.resample_filter, pad=(2, 1, 2, 1))  # same size, low-passed
        x = F.conv2d(x, self.weight * self.weight_gain, stride=self.down, padding=self.padding)
        act_gain = math.sqrt(2) if self.activation == "lrelu" else 1.0
        return bias_act(x, self.bias, self.activation, gain=act_gain * gain)


class Block(nn.Module):
    """[B, c_in, R, R] -> [B, c_out, R/2, R/2]; residual, each branch scaled by sqrt(1/2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv0 = Conv(c_in, c_in, 3)
        self.conv1 = Conv(c_in, c_out, 3, down=2)
        self.skip = Conv(c_in, c_out, 1, activation="linear", bias=False, down=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.skip(x, gain=math.sqrt(0.5))
        return y + self.conv1(self.conv0(x), gain=math.sqrt(0.5))


class Discriminator(nn.Module):
    def __init__(self, resolution: int = 64, channel_base: int = 2048, channel_max: int = 256,
                 mbstd_group: int = 4):
        super().__init__()
        levels = int(math.log2(resolution)) if resolution > 0 else 0
        if resolution < 8 or 2**levels != resolution:
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        self.resolution, self.mbstd_group = resolution, mbstd_group
        self.config = dict(resolution=resolution, channel_base=channel_base, channel_max=channel_max,
                           mbstd_group=mbstd_group)
        res = [2**i for i in range(levels, 2, -1)]  # R, R/2, ... 8
        ch = {r: min(channel_base // r, channel_max) for r in res + [4]}
        self.from_rgb = Conv(3, ch[resolution], 1)
        self.blocks = nn.ModuleList(Block(ch[r], ch[r // 2]) for r in res)
        self.conv = Conv(ch[4] + 1, ch[4], 3)
        self.fc = FullyConnectedLayer(ch[4] * 16, ch[4], activation="lrelu")
        self.out = FullyConnectedLayer(ch[4], 1)

    def minibatch_std(self, x: torch.Tensor) -> torch.Tensor:
        """Append one channel: the std over groups of samples, averaged over features and pixels, so D
        sees a batch's variety (a collapsed generator is told apart)."""
        b, c, h, w = x.shape
        g = min(self.mbstd_group, b)
        while b % g:
            g -= 1
        y = x.reshape(g, -1, c, h, w)  # [G, B/G, C, H, W]
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=[1, 2, 3])  # [B/G]
        y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)  # [B, 1, H, W]
        return torch.cat([x, y], dim=1)

    def features(self, image: torch.Tensor, depth: int | None = None) -> list[torch.Tensor]:
        """The activation after from_rgb and after every block (fine to coarse), at most `depth`."""
        x = self.from_rgb(image * 2 - 1)
        out = [x]
        for block in self.blocks:
            if depth is not None and len(out) >= depth:
                break
            x = block(x)
            out.append(x)
        return out

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        assert image.ndim == 4 and image.shape[1:] == (3, self.resolution, self.resolution), \
            f"image must be [B, 3, {self.resolution}, {self.resolution}], got {list(image.shape)}"
        x = self.features(image)[-1]  # [B, C, 4, 4]
        x = self.conv(self.minibatch_std(x))
        return self.out(self.fc(x.flatten(1))).flatten()  # [B]
