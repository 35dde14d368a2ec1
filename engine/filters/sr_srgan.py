"""The SRGAN generator (Ledig et al. 2017, arXiv:1609.04802), as leftthomas/SRGAN trained it.

SRGAN was the first GAN-trained super-resolver; its generator is a small ResNet (9x9 head, residual
blocks with BN, sub-pixel upsampling). It is kept here for the weights people already have, and as a
light alternative to RRDBNet.

Weights: leftthomas/SRGAN `netG_epoch_<scale>_<epoch>.pth`, a flat state dict (older ones in torch's
legacy pre-zip serialisation, which `torch.load(weights_only=True)` reads), keys `block1.0`,
`block2..block6.{conv1,bn1,prelu,conv2,bn2}`, `block7.0/1`, `block8.N.{conv,prelu}` and a final
`block8.K` conv. The repository's history has two tails: `block7` = conv + BN (current code) and
conv + PReLU (2019 checkpoints); `tail` picks one, and the weights say which.

Shapes: image [B, 3, H, W] in [0, 1] -> [B, 3, scale*H, scale*W] in [0, 1] ((tanh + 1) / 2).
"""

from __future__ import annotations

import math

import torch
from torch import nn

NUM_RESIDUAL = 5  # block2 ... block6, fixed by the original's attribute names
TAILS = ("batchnorm", "prelu")


class ResidualBlock(nn.Module):
    def __init__(self, num_feat: int):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(num_feat)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class UpsampleBlock(nn.Module):
    """x2 by sub-pixel convolution: conv to 4x the channels, then pixel shuffle."""

    def __init__(self, num_feat: int):
        super().__init__()
        self.conv = nn.Conv2d(num_feat, num_feat * 4, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.prelu = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.pixel_shuffle(self.conv(x)))


class Generator(nn.Module):
    def __init__(self, scale: int = 4, num_feat: int = 64, tail: str = "batchnorm"):
        super().__init__()
        steps = int(math.log2(scale)) if scale > 1 else 0
        if 2**steps != scale or steps < 1:
            raise ValueError(f"SRGAN scale must be a power of two >= 2, got {scale}")
        if tail not in TAILS:
            raise ValueError(f"SRGAN tail must be one of {', '.join(TAILS)}, got {tail!r}")
        self.scale = scale
        self.input_multiple = 1
        # input pixels each side that reach one output pixel: 9x9 head, the residual and tail convs at
        # 1x, then each upsampling conv and the 9x9 output conv count for less at their finer scale
        self.receptive_radius = math.ceil(4 + 2 * NUM_RESIDUAL + 1 + sum(0.5**k for k in range(steps)) + 4 / scale)
        self.config = dict(scale=scale, num_feat=num_feat, tail=tail)
        self.block1 = nn.Sequential(nn.Conv2d(3, num_feat, 9, padding=4), nn.PReLU())
        for i in range(NUM_RESIDUAL):
            setattr(self, f"block{i + 2}", ResidualBlock(num_feat))
        norm = nn.BatchNorm2d(num_feat) if tail == "batchnorm" else nn.PReLU()
        self.block7 = nn.Sequential(nn.Conv2d(num_feat, num_feat, 3, padding=1), norm)
        self.block8 = nn.Sequential(*(UpsampleBlock(num_feat) for _ in range(steps)),
                                    nn.Conv2d(num_feat, 3, 9, padding=4))

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor]) -> dict | None:
        """The constructor arguments that fit these weights, or None if they are not this network's."""
        if not all(k in state for k in ("block1.0.weight", "block2.conv1.weight", "block7.0.weight")):
            return None
        steps = len({k.split(".")[1] for k in state if k.startswith("block8.") and ".conv." in k})
        tail = "batchnorm" if "block7.1.running_mean" in state else "prelu"
        return dict(scale=2**steps, num_feat=state["block1.0.weight"].shape[0], tail=tail)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == 3, f"input must be [B, 3, H, W], got {list(x.shape)}"
        head = self.block1(x)  # [B, F, H, W]
        feat = head
        for i in range(NUM_RESIDUAL):
            feat = getattr(self, f"block{i + 2}")(feat)
        out = self.block8(head + self.block7(feat))  # [B, 3, sH, sW], unbounded
        return (torch.tanh(out) + 1) / 2
