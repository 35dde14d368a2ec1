"""Fast neural style transfer (Johnson, Alahi and Fei-Fei 2016, "Perceptual Losses for Real-Time
Style Transfer and Super-Resolution", arXiv:1603.08155) as a filter: one feed-forward pass per frame.

Weight format: the PyTorch examples' `fast_neural_style` TransformerNet `.pth` (their candy, mosaic,
udnie and rain_princess), keys `conv1.conv2d.weight`, `in1.weight`, `res1.conv1.conv2d.weight`, ...,
`deconv1.conv2d.weight`, ..., `deconv3.conv2d.bias`; read with `torch.load(weights_only=True)`. Their
files carry `in<N>.running_mean/var` from an old PyTorch's instance norm, which are dropped (as the
examples' own `stylize` does). A `.safetensors` of the same keys works too: the styles Masquerade
trains (`engine/training/style.py`) are narrower, and the width and number of residual blocks are
read from the tensors. The network maps 0..255 to 0..255, like the examples' images.

`stylise` is the pure function; `StyleTransfer` is the module a show's `[[filters]]` row builds, with
the live controls `blend` and `stabilise` (temporal stabilisation: `engine/filters/img2img.py`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.filters.img2img import ImageToImage, WeightsError, read_weights, run_padded, wrong_network

WANTED = "a fast-neural-style TransformerNet (kind = \"style\")"


class _Conv(nn.Module):
    """Reflection padding of half the kernel, then a (possibly strided) convolution."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, upsample: int = 1):
        super().__init__()
        self.pad, self.upsample = kernel // 2, upsample
        self.conv2d = nn.Conv2d(c_in, c_out, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample > 1:  # upsample-then-convolve decoder (no transposed conv, no checkerboard)
            x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
        return self.conv2d(F.pad(x, (self.pad,) * 4, mode="reflect"))


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1, self.in1 = _Conv(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True)
        self.conv2, self.in2 = _Conv(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))


class TransformerNet(nn.Module):
    """[B, 3, H, W] in 0..255 -> [B, 3, H, W], nominally 0..255 (unclamped); H, W multiples of 4.

    9x9 conv (width) -> two stride-2 3x3 convs (2 width, 4 width) -> `blocks` residual blocks ->
    two nearest x2 upsamples each followed by a 3x3 conv -> 9x9 conv to RGB; every conv but the
    last is followed by an affine instance norm and ReLU. The examples' network is width 32, 5 blocks."""

    def __init__(self, width: int = 32, blocks: int = 5):
        super().__init__()
        if width < 1 or blocks < 0:
            raise ValueError(f"TransformerNet needs width >= 1 and blocks >= 0, got {width}, {blocks}")
        self.config = dict(width=width, blocks=blocks)
        w = width
        self.conv1, self.in1 = _Conv(3, w, 9), nn.InstanceNorm2d(w, affine=True)
        self.conv2, self.in2 = _Conv(w, 2 * w, 3, stride=2), nn.InstanceNorm2d(2 * w, affine=True)
        self.conv3, self.in3 = _Conv(2 * w, 4 * w, 3, stride=2), nn.InstanceNorm2d(4 * w, affine=True)
        for i in range(1, blocks + 1):
            setattr(self, f"res{i}", _Residual(4 * w))
        self.deconv1, self.in4 = _Conv(4 * w, 2 * w, 3, upsample=2), nn.InstanceNorm2d(2 * w, affine=True)
        self.deconv2, self.in5 = _Conv(2 * w, w, 3, upsample=2), nn.InstanceNorm2d(w, affine=True)
        self.deconv3 = _Conv(w, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.in1(self.conv1(x)))  # [B, w, H, W]
        y = F.relu(self.in2(self.conv2(y)))  # [B, 2w, H/2, W/2]
        y = F.relu(self.in3(self.conv3(y)))  # [B, 4w, H/4, W/4]
        for i in range(1, self.config["blocks"] + 1):
            y = getattr(self, f"res{i}")(y)
        y = F.relu(self.in4(self.deconv1(y)))  # [B, 2w, H/2, W/2]
        y = F.relu(self.in5(self.deconv2(y)))  # [B, w, H, W]
        return self.deconv3(y)  # [B, 3, H, W]

    @classmethod
    def config_from_state_dict(cls, state: dict[str, torch.Tensor]) -> dict | None:
        """{width, blocks} if these are exactly a TransformerNet's tensors (names and shapes), else None."""
        first = state.get("conv1.conv2d.weight")
        if first is None or first.ndim != 4 or tuple(first.shape[1:]) != (3, 9, 9):
            return None
        blocks = 0
        while f"res{blocks + 1}.conv1.conv2d.weight" in state:
            blocks += 1
        config = dict(width=int(first.shape[0]), blocks=blocks)
        with torch.device("meta"):
            expected = cls(**config).state_dict()
        if set(expected) != set(state) or any(tuple(state[k].shape) != tuple(v.shape) for k, v in expected.items()):
            return None
        return config


def load_style(path: str | Path) -> TransformerNet:
    """A TransformerNet with the file's weights, in eval mode on the CPU; any other network is an
    error naming the file, what it holds and what was asked for."""
    state = read_weights(path)
    config = TransformerNet.config_from_state_dict(state)
    if config is None:
        raise wrong_network(path, state, WANTED)
    net = TransformerNet(**config)
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return net.eval().requires_grad_(False)


@torch.inference_mode()
def stylise(image: torch.Tensor, net: TransformerNet) -> torch.Tensor:
    """image [B, 3, H, W] in [0, 1] -> styled [B, 3, H, W] in [0, 1] (any H, W; fp16 autocast on CUDA)."""
    assert image.ndim == 4 and image.shape[1] == 3, f"image must be [B, 3, H, W], got {list(image.shape)}"
    with torch.autocast("cuda", dtype=torch.float16, enabled=image.is_cuda):
        out = run_padded(image * 255, net)
    return (out.float() / 255).clamp(0, 1).to(image.dtype)


class StyleTransfer(ImageToImage):
    """`[[filters]] kind = "style"`: a TransformerNet weights file painted over every frame, with
    `blend`, `stabilise` and `threshold` (engine/filters/img2img.py ImageToImage)."""

    load = staticmethod(load_style)
    run = staticmethod(stylise)


__all__ = ["StyleTransfer", "TransformerNet", "WeightsError", "load_style", "stylise"]
