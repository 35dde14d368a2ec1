"""Real-ESRGAN's compact network, `SRVGGNetCompact` (Wang et al. 2021, arXiv:2107.10833).

A plain VGG-style stack at the input resolution and one pixel shuffle at the end: no dense blocks and
no upsampling convs, which is what makes it fast enough for video frames. It learns only the
difference from a nearest-neighbour upscale, so an untrained net already gives a sensible picture.

Weights: Real-ESRGAN's `.pth` files hold `{'params': state_dict}` (or `params_ema`). Every layer,
activations included, sits in one `body` list, so convs are `body.0, body.2, ...` and per-channel
PReLU slopes are `body.1.weight, body.3.weight, ...`; keeping that layout lets the files load as
they are. ReLU and LeakyReLU hold no weights, so a file cannot say which of the two it was trained
with: the caller must.

Shapes: image [B, C_in, H, W] -> [B, C_out, scale*H, scale*W], not clamped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("prelu", "leakyrelu", "relu")


def _activation(kind: str, num_feat: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if kind == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.1)  # the slope Real-ESRGAN trained with
    if kind == "relu":
        return nn.ReLU()
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {kind!r}")


class SRVGGNetCompact(nn.Module):
    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_conv: int = 16,
                 scale: int = 4, activation: str = "prelu"):
        super().__init__()
        if scale < 1 or num_conv < 0:
            raise ValueError(f"need scale >= 1 and num_conv >= 0, got scale={scale}, num_conv={num_conv}")
        self.scale = scale
        self.input_multiple = 1  # any input size works
        self.receptive_radius = num_conv + 2  # input pixels each side that reach one output pixel
        self.config = dict(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_conv=num_conv,
                           scale=scale, activation=activation)
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), _activation(activation, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _activation(activation, num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(layers)  # a list, not Sequential: the original's key names

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor]) -> dict | None:
        """The constructor arguments that fit these weights, or None if they are not this network's.
        `activation` is None when the file cannot tell ReLU from LeakyReLU."""
        if "body.0.weight" not in state or any(not k.startswith("body.") for k in state):
            return None
        convs = sorted(int(k.split(".")[1]) for k, v in state.items() if k.endswith(".weight") and v.ndim == 4)
        if len(convs) < 2 or convs != list(range(0, 2 * len(convs), 2)):
            return None
        first, last = state["body.0.weight"], state[f"body.{convs[-1]}.weight"]
        num_in_ch, num_feat = first.shape[1], first.shape[0]
        num_out_ch = num_in_ch
        scale = math.isqrt(last.shape[0] // num_out_ch)
        if scale < 1 or num_out_ch * scale * scale != last.shape[0] or last.shape[1] != num_feat:
            return None
        prelu = state.get("body.1.weight")
        activation = "prelu" if prelu is not None and prelu.ndim == 1 else None
        return dict(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_conv=len(convs) - 2,
                    scale=scale, activation=activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config["num_in_ch"]
        assert x.ndim == 4 and x.shape[1] == c, f"input must be [B, {c}, H, W], got {list(x.shape)}"
        out = x
        for layer in self.body:
            out = layer(out)  # [B, num_feat, H, W], then [B, C_out * s^2, H, W]
        out = F.pixel_shuffle(out, self.scale)  # [B, C_out, sH, sW]
        return out + F.interpolate(x, scale_factor=self.scale, mode="nearest")
