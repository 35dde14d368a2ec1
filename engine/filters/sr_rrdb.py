"""ESRGAN's generator, `RRDBNet` (Wang et al. 2018, arXiv:1809.00219), as Real-ESRGAN
(arXiv:2107.10833) extended it to x2 and x1.

Residual-in-residual dense blocks without batch norm: BN caused artefacts at high resolution, and the
0.2 residual scaling keeps a deep stack of them trainable. Upsampling is nearest-neighbour + conv
rather than transposed conv or pixel shuffle, to avoid checkerboard artefacts. The trunk always
works x4; for x2 and x1 the input is pixel-unshuffled first (by 2 and 4), which also makes those
models cheaper.

Weights: basicsr / Real-ESRGAN `.pth` files, `{'params_ema': state_dict}` or `{'params': ...}`, with
keys `conv_first`, `body.N.rdbK.convM`, `conv_body`, `conv_up1`, `conv_up2`, `conv_hr`, `conv_last`.
ESRGAN's own later release names the same tensors `RRDB_trunk.N.RDBK`, `trunk_conv`, `upconv1/2`,
`HRconv`; `rename_esrgan_keys` maps those onto this layout.

Shapes: image [B, C_in, H, W] (H, W multiples of 4 / scale) -> [B, C_out, scale*H, scale*W].
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

UNSHUFFLE = {4: 1, 2: 2, 1: 4}  # output scale -> pixel-unshuffle factor in front of the x4 trunk


class ResidualDenseBlock(nn.Module):
    """Five convs, each seeing the block input and every earlier conv's output."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        for i in range(4):
            setattr(self, f"conv{i + 1}", nn.Conv2d(num_feat + i * num_grow_ch, num_grow_ch, 3, 1, 1))
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), 0.2))
        return self.conv5(torch.cat(features, 1)) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 4, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32):
        super().__init__()
        if scale not in UNSHUFFLE:
            raise ValueError(f"RRDBNet scale must be 1, 2 or 4, got {scale}")
        self.scale = scale
        self.unshuffle = UNSHUFFLE[scale]
        self.input_multiple = self.unshuffle  # the input must split evenly into unshuffle cells
        self.config = dict(num_in_ch=num_in_ch, num_out_ch=num_out_ch, scale=scale, num_feat=num_feat,
                           num_block=num_block, num_grow_ch=num_grow_ch)
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor]) -> dict | None:
        """The constructor arguments that fit these weights, or None if they are not this network's."""
        needed = ("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_last.weight")
        if not all(k in state for k in needed):
            return None
        first, last = state["conv_first.weight"], state["conv_last.weight"]
        num_out_ch = last.shape[0]
        cells = first.shape[1] // num_out_ch  # unshuffle^2, assuming C_in == C_out as all releases do
        scale = {u * u: s for s, u in UNSHUFFLE.items()}.get(cells)
        if scale is None or cells * num_out_ch != first.shape[1]:
            return None
        num_block = len({k.split(".")[1] for k in state if k.startswith("body.")})
        return dict(num_in_ch=num_out_ch, num_out_ch=num_out_ch, scale=scale, num_feat=first.shape[0],
                    num_block=num_block, num_grow_ch=state["body.0.rdb1.conv1.weight"].shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, m = self.config["num_in_ch"], self.input_multiple
        assert x.ndim == 4 and x.shape[1] == c and x.shape[2] % m == 0 and x.shape[3] % m == 0, \
            f"input must be [B, {c}, H, W] with H, W multiples of {m}, got {list(x.shape)}"
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)  # [B, C * u^2, H/u, W/u]
        feat = self.conv_first(x)  # [B, F, h, w]
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):  # h -> 2h -> 4h
            feat = F.leaky_relu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))  # [B, C_out, 4h, 4w]


_ESRGAN_NAMES = [(r"^RRDB_trunk\.", "body."), (r"\.RDB(\d)\.", r".rdb\1."), (r"^trunk_conv\.", "conv_body."),
                 (r"^upconv(\d)\.", r"conv_up\1."), (r"^HRconv\.", "conv_hr.")]


def rename_esrgan_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ESRGAN repository names (`RRDB_trunk.0.RDB1.conv1.weight`, ...) -> basicsr names; others unchanged."""
    out = {}
    for key, value in state.items():
        for pattern, repl in _ESRGAN_NAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out
