"""FastGAN's discriminator (Liu et al. 2021, "Towards Faster and Stabilized GAN Training for High-fidelity
Few-shot Image Synthesis", arXiv:2101.04775, Fig. 4), small and plain, to train
`engine.generators.lightweight_gan.Generator` from scratch on a CPU.

  image [B, 3, R, R] in [0, 1] -> stem: 4x4 conv, stride 2 -> R/2
  -> DownBlockComp per halving down to 8x8: (4x4 conv s2, LReLU, 3x3 conv, LReLU) averaged with
     (2x2 average pool, 1x1 conv, LReLU)
  -> skip-layer excitation: the R/2 features, pooled to 4x4, gate the 8x8 features' channels
  -> 1x1 conv, LReLU, 4x4 conv: a 5x5 map of patch logits [B, 25]
  -> self-supervision: a small decoder reconstructs the (augmented) input at min(R, 64) px from the 8x8
     features; its L2 error is added to D's loss (the paper uses LPIPS, and a second decoder for a random
     crop of the 16x16 features: both left out here, as they cost a CPU more than they give at 128 px).

Batch norm is left out (real and fake pass separately); the trainer puts spectral norm on every conv and
folds it into plain weights when it saves. Model files name it `lightweight-gan-discriminator`; it is not
in the live registry (nothing in a show needs it) and is loaded by `engine.training.nets`.

`forward(image)` is the mean patch logit [B], as every discriminator here; `run(image)` gives what training
needs: (patch logits [B, P], reconstruction [B, 3, r, r]); `features(image)` the activations fine to coarse.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2)


class DownBlockComp(nn.Module):
    """[B, c_in, S, S] -> [B, c_out, S/2, S/2]."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1), _lrelu(), nn.Conv2d(c_out, c_out, 3, 1, 1),
                                  _lrelu())
        self.direct = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(c_in, c_out, 1), _lrelu())

    def forward(self, x):
        return (self.main(x) + self.direct(x)) / 2


class Excite(nn.Module):
    """Skip-layer excitation: [B, c_in, S, S] -> channel gate [B, c_out, 1, 1] in (0, 1)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Conv2d(c_in, c_out, 4), nn.SiLU(),
                                 nn.Conv2d(c_out, c_out, 1), nn.Sigmoid())

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    """[B, c_in, 8, 8] -> [B, 3, 8 * 2^ups, ...] in [0, 1]: nearest up-sampling, 3x3 conv, GLU per doubling."""

    def __init__(self, c_in: int, ups: int, width: int = 64):
        super().__init__()
        layers, c = [], c_in
        for i in range(ups):
            c_out = max(16, width >> i)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c_out * 2, 3, 1, 1), nn.GLU(dim=1)]
            c = c_out
        layers += [nn.Conv2d(c, 3, 3, 1, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Discriminator(nn.Module):
    def __init__(self, resolution: int = 128, channels: int = 16, channel_max: int = 256, decoder: bool = True):
        super().__init__()
        levels = int(math.log2(resolution)) if isinstance(resolution, int) and resolution > 0 else 0
        if not 16 <= resolution <= 1024 or 2**levels != resolution:
            raise ValueError(f"resolution must be a power of two 16..1024, got {resolution}")
        self.config = dict(resolution=resolution, channels=channels, channel_max=channel_max, decoder=decoder)
        self.resolution = resolution

        def width(px: int) -> int:  # `channels` at full resolution, doubling per halving
            return min(channels * resolution // px, channel_max)

        self.stem = nn.Sequential(nn.Conv2d(3, width(resolution // 2), 4, 2, 1), _lrelu())  # -> R/2
        sizes = [resolution >> i for i in range(1, levels - 3)]  # inputs R/2 .. 16: each block halves
        self.blocks = nn.ModuleList([DownBlockComp(width(s), width(s // 2)) for s in sizes])
        self.excite = Excite(width(resolution // 2), width(8))
        self.head = nn.Sequential(nn.Conv2d(width(8), width(8), 1), _lrelu(), nn.Conv2d(width(8), 1, 4))
        self.decoder = Decoder(width(8), int(math.log2(min(resolution, 64))) - 3) if decoder else None

    def _trunk(self, image: torch.Tensor) -> list[torch.Tensor]:
        assert image.ndim == 4 and image.shape[1:] == (3, self.resolution, self.resolution), \
            f"image must be [B, 3, {self.resolution}, {self.resolution}], got {list(image.shape)}"
        feats = [self.stem(image * 2 - 1)]  # [B, C, R/2, R/2]
        for block in self.blocks:
            feats.append(block(feats[-1]))
        feats[-1] = feats[-1] * self.excite(feats[0])  # [B, C8, 8, 8]
        return feats

    def run(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """image [B, 3, R, R] -> (patch logits [B, 25], reconstruction [B, 3, r, r] or None)."""
        feats = self._trunk(image)
        logits = self.head(feats[-1]).flatten(1)
        return logits, (self.decoder(feats[-1]) if self.decoder is not None else None)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self._trunk(image)[-1]).flatten(1).mean(dim=1)  # [B]

    def features(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self._trunk(image)


def reconstruction_target(image: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """The image D saw, at the decoder's size ([B, 3, r, r])."""
    return F.interpolate(image, size=recon.shape[-2:], mode="area") if image.shape[-1] != recon.shape[-1] else image
