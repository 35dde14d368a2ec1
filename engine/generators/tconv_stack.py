"""A generator that is one stack of transposed convolutions: the shape of most DCGAN-style generators
found in the wild (Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional
GANs", arXiv:1511.06434), whatever their kernel sizes, strides, paddings and depth.

One `config` describes any such stack: `z_dim` and a list of layers, each a dict
`{"in": 64, "out": 256, "kernel": 3, "stride": 2, "padding": 0, "bias": true, "norm": "batch",
"activation": "relu"}` (`output_padding` optional). Layer i is `blocks.{i}.conv` (ConvTranspose2d) and,
with `norm: "batch"`, `blocks.{i}.norm` (BatchNorm2d, eps 1e-5, running statistics at inference). The
last layer's activation says the output scale: `tanh` gives [-1, 1] (mapped to [0, 1]), `sigmoid` [0, 1].
`dcgan_import` fills this from foreign state dicts; the PyTorch examples' layout loads into
`dcgan.Generator` instead, which this module generalises.

Shapes: z [B, z_dim] -> [B, z_dim, 1, 1] -> ... -> image [B, 3, R, R] in [0, 1]; one-channel (grey)
output is repeated to RGB, a fourth (alpha) channel is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

NORMS = ("none", "batch")
ACTIVATIONS = {"relu": lambda: nn.ReLU(), "lrelu": lambda: nn.LeakyReLU(0.2), "tanh": nn.Tanh,
               "sigmoid": nn.Sigmoid, "linear": nn.Identity}
OUTPUT_ACTIVATIONS = ("tanh", "sigmoid")


@dataclass(frozen=True)
class Layer:
    """One transposed convolution, its optional normalisation and its activation."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    bias: bool = True
    norm: str = "none"
    activation: str = "relu"

    @classmethod
    def from_config(cls, d: dict) -> Layer:
        required = ("in", "out", "kernel")
        optional = ("stride", "padding", "output_padding", "bias", "norm", "activation")
        if not isinstance(d, dict) or not set(required) <= set(d) or set(d) - {*required, *optional}:
            raise ValueError(f"a layer is a dict with in, out, kernel (optional: {', '.join(optional)}), got {d!r}")
        layer = cls(int(d["in"]), int(d["out"]), int(d["kernel"]), int(d.get("stride", 1)), int(d.get("padding", 0)),
                    int(d.get("output_padding", 0)), bool(d.get("bias", True)), str(d.get("norm", "none")),
                    str(d.get("activation", "relu")))
        if layer.norm not in NORMS:
            raise ValueError(f"unknown norm {layer.norm!r}; known: {', '.join(NORMS)}")
        if layer.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {layer.activation!r}; known: {', '.join(ACTIVATIONS)}")
        if min(layer.in_channels, layer.out_channels, layer.kernel, layer.stride) < 1 or layer.padding < 0:
            raise ValueError(f"bad layer {d!r}: channels, kernel and stride must be >= 1, padding >= 0")
        return layer

    def to_config(self) -> dict:
        return {"in": self.in_channels, "out": self.out_channels, "kernel": self.kernel, "stride": self.stride,
                "padding": self.padding, "output_padding": self.output_padding, "bias": self.bias,
                "norm": self.norm, "activation": self.activation}

    def output_size(self, size: int) -> int:
        return (size - 1) * self.stride - 2 * self.padding + self.kernel + self.output_padding

    def describe(self) -> str:
        norm = " BN" if self.norm == "batch" else ""
        return (f"{self.in_channels}->{self.out_channels} k{self.kernel} s{self.stride} p{self.padding}"
                f"{f' op{self.output_padding}' if self.output_padding else ''}{'' if self.bias else ' no-bias'}"
                f"{norm} {self.activation}")


def output_sizes(layers: list[Layer]) -> list[int]:
    """Spatial size after each layer, starting from z as a 1x1 map."""
    sizes, size = [], 1
    for layer in layers:
        size = layer.output_size(size)
        sizes.append(size)
    return sizes


class Block(nn.Module):
    def __init__(self, layer: Layer):
        super().__init__()
        self.conv = nn.ConvTranspose2d(layer.in_channels, layer.out_channels, layer.kernel, layer.stride,
                                       layer.padding, layer.output_padding, bias=layer.bias)
        if layer.norm == "batch":
            self.norm = nn.BatchNorm2d(layer.out_channels)
        self.act = ACTIVATIONS[layer.activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if hasattr(self, "norm"):
            x = self.norm(x)
        return self.act(x)


class Generator(nn.Module):
    """z -> (transposed conv, [BN], activation) per listed layer -> image."""

    def __init__(self, z_dim: int, layers: list[dict]):
        super().__init__()
        specs = [Layer.from_config(d) for d in layers]
        if not specs:
            raise ValueError("a transposed-conv stack needs at least one layer")
        if specs[0].in_channels != z_dim:
            raise ValueError(f"the first layer takes {specs[0].in_channels} channels but z_dim is {z_dim}")
        for i, (a, b) in enumerate(zip(specs, specs[1:])):
            if a.out_channels != b.in_channels:
                raise ValueError(f"layer {i} gives {a.out_channels} channels but layer {i + 1} takes {b.in_channels}")
        if specs[-1].activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"the last layer's activation must be one of {OUTPUT_ACTIVATIONS} (it sets the output "
                             f"range), got {specs[-1].activation!r}")
        self.img_channels = specs[-1].out_channels
        if self.img_channels not in (1, 3, 4):
            raise ValueError(f"the last layer must give 1 (grey), 3 (RGB) or 4 (RGBA) channels, "
                             f"not {self.img_channels}")
        sizes = output_sizes(specs)
        if min(sizes) < 1:
            raise ValueError(f"these strides and paddings shrink the image to nothing (sizes {sizes})")
        self.z_dim, self.resolution, self.specs = z_dim, sizes[-1], specs
        self.config = dict(z_dim=z_dim, layers=[s.to_config() for s in specs])
        self.blocks = nn.Sequential(*(Block(s) for s in specs))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z [B, z_dim] -> image [B, 3, R, R] in [0, 1]. truncation_psi < 1 pulls z toward the prior's
        mean (zero), as `dcgan.Generator` does: there is no w space here."""
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [B, {self.z_dim}], got {list(z.shape)}"
        x = self.blocks((z * truncation_psi)[:, :, None, None])  # [B, img_channels, R, R]
        if self.specs[-1].activation == "tanh":
            x = (x + 1) * 0.5
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return x[:, :3]
