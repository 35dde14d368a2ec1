"""pix2pix U-Net generators as filters: paired image-to-image translation (Isola, Zhu, Zhou and Efros
2017, "Image-to-Image Translation with Conditional Adversarial Networks", arXiv:1611.07004), e.g.
facades label2photo, edges2shoes, day2night; the U-Net itself is Ronneberger et al. 2015 (arXiv:1505.04597).

Weight format: junyanz/pytorch-CycleGAN-and-pix2pix's `UnetGenerator` state dicts (`latest_net_G.pth`,
the published `<name>.pth`; `--netG unet_256` or `unet_128`), read with `torch.load(weights_only=True)` or
from a `.safetensors`. The network is one block nested in the next, so the keys are nested too:
`model.model.0.weight` (the outer down conv), `model.model.1.model.1.weight` (the second level's),
`model.model.1.model.3.model.1.weight` (the third's), ... Everything is read from the tensors: the
depth `num_downs` (7 for unet_128, 8 for unet_256; any depth from 5 works), `ngf` (the first conv's width),
input and output channels, and the norm: batch (affine, running statistics; pix2pix's default) or
instance (no affine, no statistics: convs carry a bias instead; stale instance statistics in old files
are dropped, as the repository's loader does). Dropout (pix2pix's `--no_dropout` off) leaves no key and
is off here: the network runs in eval mode, deterministic frame for frame. Images are [-1, 1] in and out.

`statistics`: pix2pix's own test script runs without `--eval` by default, so batch norms normalise with
the statistics of the image at hand (the paper's choice, §3.3: at batch size 1 that is instance
normalisation with the batch norm's scale and shift). `"running"` (default) uses the stored running
statistics, as `--eval` does; `"frame"` normalises each frame by its own, as the published results
were made. Dropout stays off either way.

Sizes: a U-Net of depth n halves the frame n times and concatenates each level with its mirror, so it
needs sides that are multiples of 2^n (256 for unet_256). As the repository's own test-time
preprocessing does, the frame is resized (bilinear, antialiased) to the nearest such size, at least
2^n, translated and resized back; a frame of the right size is not resampled.

`translate` is the pure function; `Pix2Pix` is the module a `[[filters]] kind = "pix2pix"` row builds,
with the same `blend` and `stabilise` controls as `style` and `cyclegan`.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.filters.img2img import ImageToImage, WeightsError, read_weights, wrong_network

WANTED = "a pix2pix UnetGenerator (kind = \"pix2pix\")"
NORMS = ("batch", "instance")
STATISTICS = ("running", "frame")
MIN_DOWNS, MAX_DOWNS = 5, 12  # the repository's schedule needs 5 levels; 12 (4096 px) is plenty


class _BatchNorm(nn.BatchNorm2d):
    """A batch norm (same tensors, same keys) that can instead normalise each image by its own statistics."""

    per_frame = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.per_frame:
            return super().forward(x)
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return _BatchNorm(channels)
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class _Level(nn.Module):
    """One level of the U-Net: x [B, outer, H, W] -> cat(x, up(inner(down(x)))) [B, 2 outer, H, W]; the
    outermost level returns up(...) alone, [B, out_channels, H, W].

    down: LeakyReLU(0.2), 4x4 stride-2 conv to `inner` channels, norm (the outermost takes the image
    itself: no activation or norm before its conv; the innermost has no norm after it). up: ReLU, 4x4
    stride-2 transposed conv back to `outer`, norm (the outermost: tanh instead). Convs carry a bias
    where no batch norm follows (instance norm, and the outermost up conv). Module indices in `model`
    are the original's, so the state dict keys are too."""

    def __init__(self, outer: int, inner: int, norm: str, sub: _Level | None = None, in_channels: int | None = None):
        super().__init__()
        self.outermost = in_channels is not None
        bias = norm == "instance"
        down = nn.Conv2d(in_channels or outer, inner, kernel_size=4, stride=2, padding=1, bias=bias)
        if self.outermost:
            up = nn.ConvTranspose2d(2 * inner, outer, kernel_size=4, stride=2, padding=1)
            layers = [down, sub, nn.ReLU(True), up, nn.Tanh()]
        elif sub is None:  # innermost: the bottleneck, 1x1 at the native size
            up = nn.ConvTranspose2d(inner, outer, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, _norm(norm, outer)]
        else:
            up = nn.ConvTranspose2d(2 * inner, outer, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, _norm(norm, inner), sub, nn.ReLU(True), up, _norm(norm, outer)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y if self.outermost else torch.cat([x, y], dim=1)


class UnetGenerator(nn.Module):
    """[B, in, H, W] in [-1, 1] -> [B, out, H, W] in [-1, 1]; H, W multiples of 2^num_downs.

    Widths from the bottleneck out: `num_downs - 4` levels of 8 ngf, then 8 -> 4, 4 -> 2, 2 -> 1 ngf, and
    the outermost level from the image to ngf. unet_256 is num_downs 8 (256 px to a 1x1 bottleneck),
    unet_128 is 7."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_downs: int = 8, ngf: int = 64,
                 norm: str = "batch"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        if not MIN_DOWNS <= num_downs <= MAX_DOWNS or ngf < 1:
            raise ValueError(f"UnetGenerator needs num_downs {MIN_DOWNS}..{MAX_DOWNS} and ngf >= 1, "
                             f"got {num_downs}, {ngf}")
        self.config = dict(in_channels=in_channels, out_channels=out_channels, num_downs=num_downs, ngf=ngf,
                           norm=norm)
        level = _Level(8 * ngf, 8 * ngf, norm)  # innermost
        for _ in range(num_downs - 5):
            level = _Level(8 * ngf, 8 * ngf, norm, level)
        for outer, inner in ((4 * ngf, 8 * ngf), (2 * ngf, 4 * ngf), (ngf, 2 * ngf)):
            level = _Level(outer, inner, norm, level)
        self.model = _Level(out_channels, ngf, norm, level, in_channels=in_channels)

    @property
    def cell(self) -> int:
        """Frame sides must be multiples of this (and at least this): 2^num_downs."""
        return 2 ** self.config["num_downs"]

    def per_frame_statistics(self, on: bool) -> None:
        """Batch norms normalise by each frame's own statistics (on) or the stored running ones (off)."""
        for m in self.modules():
            if isinstance(m, _BatchNorm):
                m.per_frame = bool(on)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == self.config["in_channels"], \
            f"x must be [B, {self.config['in_channels']}, H, W], got {list(x.shape)}"
        assert x.shape[2] % self.cell == 0 and x.shape[3] % self.cell == 0, \
            f"H and W must be multiples of {self.cell}, got {list(x.shape[2:])}"
        return self.model(x)

    @classmethod
    def config_from_state_dict(cls, state: dict[str, torch.Tensor]) -> dict | None:
        """The constructor's arguments if these are exactly a UnetGenerator's tensors (names and shapes;
        a batch norm's `num_batches_tracked`, which files from PyTorch < 0.4.1 lack, may be missing),
        else None."""
        first = state.get("model.model.0.weight")
        if first is None or first.ndim != 4 or tuple(first.shape[2:]) != (4, 4):
            return None
        prefix, num_downs = "model.model.1", 1
        while f"{prefix}.model.1.weight" in state and num_downs <= MAX_DOWNS:
            num_downs += 1
            if f"{prefix}.model.3.model.1.weight" not in state:
                break  # the innermost level: no sub-level at index 3
            prefix += ".model.3"
        last = state.get("model.model.3.weight")  # the outer transposed conv: [2 ngf, out, 4, 4]
        if not MIN_DOWNS <= num_downs <= MAX_DOWNS or last is None or last.ndim != 4:
            return None
        norm = "batch" if "model.model.1.model.2.weight" in state else "instance"
        config = dict(in_channels=int(first.shape[1]), out_channels=int(last.shape[1]), num_downs=num_downs,
                      ngf=int(first.shape[0]), norm=norm)
        with torch.device("meta"):
            expected = cls(**config).state_dict()
        optional = {k for k in expected if k.endswith(".num_batches_tracked")}
        if not set(expected) - optional <= set(state) <= set(expected):
            return None
        if any(tuple(state[k].shape) != tuple(v.shape) for k, v in expected.items() if k in state):
            return None
        return config


def describe(config: dict) -> str:
    """`unet_256, ngf 64, batch norm` and the like, for messages."""
    return f"unet_{2 ** config['num_downs']}, ngf {config['ngf']}, {config['norm']} norm"


def _check_statistics(statistics: str) -> None:
    if statistics not in STATISTICS:
        raise ValueError(f"statistics must be \"running\" (the stored batch statistics) or \"frame\" "
                         f"(each frame's own), got {statistics!r}")


def load_pix2pix(path: str | Path, statistics: str = "running") -> UnetGenerator:
    """A UnetGenerator with the file's weights, in eval mode on the CPU; any other network, or a number
    that is not finite, is an error naming the file."""
    _check_statistics(statistics)
    state = read_weights(path)
    config = UnetGenerator.config_from_state_dict(state)
    if config is None:
        raise wrong_network(path, state, WANTED)
    if config["in_channels"] not in (1, 3) or config["out_channels"] not in (1, 3):
        raise wrong_network(path, state, WANTED + " for grey or RGB images")
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise WeightsError(f"{path}: {key} holds a number that is not finite (NaN or infinity)")
        if key.endswith("running_var") and (value < 0).any():
            raise WeightsError(f"{path}: {key} holds a negative variance")
    net = UnetGenerator(**config)
    full = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    for key, value in net.state_dict().items():  # old files: a batch count nothing reads in eval mode
        full.setdefault(key, value)
    net.load_state_dict(full, strict=True)
    net.per_frame_statistics(statistics == "frame")
    return net.eval().requires_grad_(False)


def working_size(h: int, w: int, cell: int) -> tuple[int, int]:
    """The size a frame of h x w is translated at: each side rounded to the nearest multiple of `cell`
    (halves round up), at least one cell."""
    return max(cell, cell * math.floor(h / cell + 0.5)), max(cell, cell * math.floor(w / cell + 0.5))


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


@torch.inference_mode()
def translate(image: torch.Tensor, net: UnetGenerator) -> torch.Tensor:
    """image [B, 3, H, W] in [0, 1] -> translated [B, 3, H, W] in [0, 1] (any H, W: run at
    `working_size`; fp16 autocast on CUDA). Grey networks see the channel mean and answer in grey."""
    assert image.ndim == 4 and image.shape[1] == 3, f"image must be [B, 3, H, W], got {list(image.shape)}"
    h, w = image.shape[-2:]
    x = _resize(image, working_size(h, w, net.cell)) * 2 - 1  # [B, 3, H', W'] in [-1, 1]
    if net.config["in_channels"] == 1:
        x = x.mean(dim=1, keepdim=True)
    with torch.autocast("cuda", dtype=torch.float16, enabled=image.is_cuda):
        y = net(x)
    y = _resize(y.float(), (h, w)).expand(-1, 3, -1, -1)
    return ((y + 1) / 2).clamp(0, 1).to(image.dtype)


class Pix2Pix(ImageToImage):
    """`[[filters]] kind = "pix2pix"`: a pix2pix UnetGenerator applied to every frame, with `blend`,
    `stabilise` and `threshold` (engine/filters/img2img.py ImageToImage) and `statistics` ("running" or
    "frame", see the module docstring)."""

    load = staticmethod(load_pix2pix)
    run = staticmethod(translate)

    def __init__(self, path: str | Path, blend: float = 1.0, stabilise: float = 0.0, threshold: float = 0.1,
                 statistics: str = "running"):
        _check_statistics(statistics)
        super().__init__(path, blend, stabilise, threshold)
        self.net.per_frame_statistics(statistics == "frame")
        self.config["statistics"] = statistics


__all__ = ["Pix2Pix", "UnetGenerator", "WeightsError", "describe", "load_pix2pix", "translate", "working_size"]
