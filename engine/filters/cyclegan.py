"""CycleGAN / pix2pix generators as filters: image-to-image translation (Zhu, Park, Isola and Efros
2017, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks",
arXiv:1703.10593), e.g. horse2zebra, monet2photo, style_vangogh.

Weight format: junyanz/pytorch-CycleGAN-and-pix2pix's `ResnetGenerator` state dicts (`latest_net_G.pth`,
`latest_net_G_A.pth`, the published `<name>.pth`): one `nn.Sequential` called `model`, keys
`model.1.weight`, `model.10.conv_block.1.weight`, ... Everything is read from the tensors: `ngf`
(first conv's width), the number of residual blocks (6 or 9, any count works), instance norm (no
affine, no running statistics: the repository's default; stale statistics in old files are dropped,
as its loader does), batch norm or none, and dropout (pix2pix's, which shifts the keys). Reflection
padding, the repository's default, is assumed (replicate padding leaves the same keys; zero padding is
not recognised). Images are [-1, 1] in and out.

`translate` is the pure function; `CycleGAN` is the module a `[[filters]]` row builds, with the same
`blend` and `stabilise` controls as `style`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from engine.filters.img2img import ImageToImage, read_weights, run_padded, wrong_network

WANTED = "a CycleGAN/pix2pix ResnetGenerator (kind = \"cyclegan\")"
NORMS = ("instance", "batch", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class _Block(nn.Module):
    """x + (pad, 3x3 conv, norm, ReLU, [dropout], pad, 3x3 conv, norm)(x)."""

    def __init__(self, channels: int, norm: str, dropout: bool, bias: bool):
        super().__init__()
        half = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), _norm(norm, channels)]
        layers = [*half, nn.ReLU(True)] + ([nn.Dropout(0.5)] if dropout else [])
        half = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), _norm(norm, channels)]
        self.conv_block = nn.Sequential(*layers, *half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """[B, in, H, W] in [-1, 1] -> [B, out, H, W] in [-1, 1]; H, W multiples of 4.

    7x7 conv (ngf) -> two stride-2 3x3 convs (2 ngf, 4 ngf) -> `blocks` residual blocks -> two
    stride-2 transposed 3x3 convs back to ngf -> 7x7 conv -> tanh; norm and ReLU after every conv but
    the last. Convs before an instance norm (or none) carry a bias; before a batch norm they do not,
    except with norm "none", where, as in the original, none do."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, blocks: int = 9,
                 norm: str = "instance", dropout: bool = False):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.config = dict(in_channels=in_channels, out_channels=out_channels, ngf=ngf, blocks=blocks,
                           norm=norm, dropout=dropout)
        bias = norm == "instance"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias),
                                   _norm(norm, ngf), nn.ReLU(True)]
        for c in (ngf, 2 * ngf):  # down: ngf -> 2 ngf -> 4 ngf, each halving H and W
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), _norm(norm, 2 * c), nn.ReLU(True)]
        layers += [_Block(4 * ngf, norm, dropout, bias) for _ in range(blocks)]
        for c in (4 * ngf, 2 * ngf):  # up: each doubling H and W exactly
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       _norm(norm, c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @classmethod
    def config_from_state_dict(cls, state: dict[str, torch.Tensor]) -> dict | None:
        """The constructor's arguments if these are exactly a ResnetGenerator's tensors, else None."""
        first = state.get("model.1.weight")
        if first is None or first.ndim != 4 or tuple(first.shape[2:]) != (7, 7):
            return None
        blocks = 0
        while any(k.startswith(f"model.{10 + blocks}.conv_block.") for k in state):
            blocks += 1
        last = state.get(f"model.{17 + blocks}.weight")
        if last is None or last.ndim != 4:
            return None
        norm = "batch" if "model.2.weight" in state else "instance" if "model.1.bias" in state else "none"
        config = dict(in_channels=int(first.shape[1]), out_channels=int(last.shape[0]), ngf=int(first.shape[0]),
                      blocks=blocks, norm=norm, dropout="model.10.conv_block.6.weight" in state)
        with torch.device("meta"):
            expected = cls(**config).state_dict()
        if set(expected) != set(state) or any(tuple(state[k].shape) != tuple(v.shape) for k, v in expected.items()):
            return None
        return config


def load_cyclegan(path: str | Path) -> ResnetGenerator:
    """A ResnetGenerator with the file's weights, in eval mode on the CPU (dropout off, batch norm on
    its running statistics); any other network is an error naming the file, what it holds and what
    was asked for."""
    state = read_weights(path)
    config = ResnetGenerator.config_from_state_dict(state)
    if config is None:
        raise wrong_network(path, state, WANTED)
    if config["in_channels"] not in (1, 3) or config["out_channels"] not in (1, 3):
        raise wrong_network(path, state, WANTED + " for grey or RGB images")
    net = ResnetGenerator(**config)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return net.eval().requires_grad_(False)


@torch.inference_mode()
def translate(image: torch.Tensor, net: ResnetGenerator) -> torch.Tensor:
    """image [B, 3, H, W] in [0, 1] -> translated [B, 3, H, W] in [0, 1] (any H, W; fp16 autocast on
    CUDA). Grey networks see the channel mean and answer in grey."""
    assert image.ndim == 4 and image.shape[1] == 3, f"image must be [B, 3, H, W], got {list(image.shape)}"
    x = image * 2 - 1
    if net.config["in_channels"] == 1:
        x = x.mean(dim=1, keepdim=True)
    with torch.autocast("cuda", dtype=torch.float16, enabled=image.is_cuda):
        y = run_padded(x, net)
    y = y.float().expand(-1, 3, -1, -1)
    return ((y + 1) / 2).clamp(0, 1).to(image.dtype)


class CycleGAN(ImageToImage):
    """`[[filters]] kind = "cyclegan"`: a CycleGAN / pix2pix ResnetGenerator applied to every frame,
    with the same `blend`, `stabilise` and `threshold` as `style` (engine/filters/img2img.py ImageToImage)."""

    load = staticmethod(load_cyclegan)
    run = staticmethod(translate)
