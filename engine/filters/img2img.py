"""What the image-to-image filters (`style`, `cyclegan`, `pix2pix`) share: reading a weights file,
naming the network it holds, running a network on any frame size, and temporal stabilisation.

Stabilisation: a feed-forward style network answers tiny input changes (a GAN walk moves a little
every frame) with visibly different brush strokes, so the output flickers. `stabilise` blends each
styled frame with the previous *output* where the *input* barely changed:

    still = clamp(1 - blur3x3(mean_c |x_t - x_{t-1}|) / threshold, 0, 1)     # [B, 1, H, W]
    y_t   = lerp(s_t, y_{t-1}, amount * still)                                # s_t: this frame, styled

A pixel whose input changed by `threshold` or more (a cut, a moving edge) takes the new styled
value at once, so nothing smears; where the input is unchanged the output is an exponential moving
average of the styled frames (time constant 1 / (1 - amount) frames), which removes flicker, and a
still input converges to its unstabilised output (the fixed point of the recursion). No optical-flow
warp: the default show's 64-px GAN frames morph in place rather than translate, and computing flow
would cost more than the style network at these sizes; the per-pixel mask is what keeps moving
content sharp. The state (previous input and output) lives in `Stabiliser`; `reset()` forgets it, and
the pipeline calls it when a render starts, so an offline render still repeats frame for frame.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import MasqueradeError


class WeightsError(MasqueradeError, ValueError):
    """A weights file an image-to-image filter cannot use; the message names the file and why."""


_STALE_STAT = re.compile(r"^(.*)\.(running_mean|running_var|num_batches_tracked)$")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a `.pth` / `.safetensors` file, with the leftovers of other tools removed:
    a `module.` prefix (files saved from `nn.DataParallel`), and running statistics of instance norms
    (old PyTorch saved them; modern `InstanceNorm2d` neither has nor uses them). A norm layer's
    statistics are stale when the layer has no `weight` beside them: batch norms in these formats
    are affine, instance norms in CycleGAN are not, and TransformerNet's are named `in<N>`."""
    from engine.filters.superres import SuperResError, read_state_dict

    try:
        state = read_state_dict(path)
    except SuperResError as e:
        raise WeightsError(str(e)) from None
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    kept = {}
    for key, value in state.items():
        m = _STALE_STAT.match(key)
        if m and (f"{m[1]}.weight" not in state or re.search(r"(^|\.)in\d+$", m[1])):
            continue
        kept[key] = value
    return kept


def identify(state: dict[str, torch.Tensor]) -> str | None:
    """A short description of the network these weights are for, or None if Masquerade knows none."""
    from engine.filters.cyclegan import ResnetGenerator
    from engine.filters.style import TransformerNet
    from engine.filters.superres import detect

    config = TransformerNet.config_from_state_dict(state)
    if config is not None:
        return f"a fast-neural-style TransformerNet (width {config['width']}, {config['blocks']} residual blocks)"
    config = ResnetGenerator.config_from_state_dict(state)
    if config is not None:
        return (f"a CycleGAN/pix2pix ResnetGenerator ({config['blocks']} blocks, ngf {config['ngf']}, "
                f"{config['norm']} norm)")
    from engine.filters.pix2pix import UnetGenerator, describe

    config = UnetGenerator.config_from_state_dict(state)
    if config is not None:
        return f"a pix2pix UnetGenerator ({describe(config)}; kind = \"pix2pix\")"
    found = detect(state)
    if found is not None:
        return f"{found[0]} (x{found[1]['scale']} super-resolution)"
    return None


def wrong_network(path: str | Path, state: dict[str, torch.Tensor], wanted: str) -> WeightsError:
    """The error for a file that is not `wanted`: it names the file, what it holds and what was asked."""
    holds = identify(state)
    if holds is None:
        sample = ", ".join(list(state)[:3])
        holds = f"no network Masquerade knows (keys {sample}, ...)"
    return WeightsError(f"{path}: holds {holds}, not {wanted} as asked")


def run_padded(x: torch.Tensor, net, multiple: int = 4, minimum: int = 8) -> torch.Tensor:
    """net(x) for any H, W: x [B, C, H, W] is padded at the bottom and right to a multiple of
    `multiple` (two stride-2 stages) and at least `minimum` (instance norm needs more than one pixel
    at the coarsest stage), by reflection where the frame is large enough, and the result is cropped."""
    h, w = x.shape[-2:]
    ph = max(-h % multiple, minimum - h + (-minimum % multiple))
    pw = max(-w % multiple, minimum - w + (-minimum % multiple))
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return net(x)[..., :h, :w]


def stabilise(styled: torch.Tensor, image: torch.Tensor, previous_output: torch.Tensor | None,
              previous_image: torch.Tensor | None, amount: float, threshold: float = 0.1) -> torch.Tensor:
    """styled, image [B, 3, H, W] (this frame, styled and as it came) -> the stabilised output (the
    formula is in the module docstring). Without a previous frame, or with amount 0, `styled` itself."""
    if previous_output is None or previous_image is None or amount <= 0:
        return styled
    change = (image - previous_image).abs().mean(dim=1, keepdim=True)  # [B, 1, H, W]
    change = F.avg_pool2d(change, 3, stride=1, padding=1, count_include_pad=False)
    still = (1 - change / threshold).clamp(0, 1)
    return torch.lerp(styled, previous_output, amount * still)


class Stabiliser:
    """The state `stabilise` needs between frames; a new frame size or batch forgets it."""

    def __init__(self, threshold: float = 0.1):
        if threshold <= 0:
            raise ValueError(f"the stabilisation threshold must be > 0 (an input change in 0..1), got {threshold}")
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self.previous_image: torch.Tensor | None = None
        self.previous_output: torch.Tensor | None = None

    def __call__(self, styled: torch.Tensor, image: torch.Tensor, amount: float) -> torch.Tensor:
        if self.previous_image is not None and (self.previous_image.shape != image.shape
                                                or self.previous_image.device != image.device):
            self.reset()
        out = stabilise(styled, image, self.previous_output, self.previous_image, amount, self.threshold)
        self.previous_image, self.previous_output = image.detach().clone(), out.detach().clone()
        return out


class ImageToImage(nn.Module):
    """The filter shell both image-to-image networks share: weights read once by `load(path)`, every
    frame `run(image, net)`, then stabilised and blended over the original.

    `blend` mixes the original (0) and the network's frame (1); `stabilise` (0..0.95) holds the output
    steady where the input is still (`Stabiliser`), and `threshold` is the input change (0..1, per
    pixel) from which a pixel follows its new value at once."""

    scale = 1
    stateful = True  # the stabiliser holds the previous frame
    controls: dict[str, tuple[float, float, float]] = {"blend": (1.0, 0.0, 1.0), "stabilise": (0.0, 0.0, 0.95)}

    @staticmethod
    def load(path: str | Path) -> nn.Module:
        raise NotImplementedError

    @staticmethod
    def run(image: torch.Tensor, net: nn.Module) -> torch.Tensor:
        raise NotImplementedError

    def __init__(self, path: str | Path, blend: float = 1.0, stabilise: float = 0.0, threshold: float = 0.1):
        super().__init__()
        self.net = self.load(path)
        self.blend, self.stabilise = float(blend), float(stabilise)
        self.stabiliser = Stabiliser(threshold)
        self.config = dict(path=str(path), blend=blend, stabilise=stabilise, threshold=threshold)

    def reset(self) -> None:
        self.stabiliser.reset()

    def forward(self, image: torch.Tensor, blend: float | None = None, stabilise: float | None = None) -> torch.Tensor:
        blend = self.blend if blend is None else float(blend)
        stabilise = self.stabilise if stabilise is None else float(stabilise)
        made = self.stabiliser(self.run(image, self.net), image, stabilise)
        return torch.lerp(image, made, blend)
