"""DeepDream (Mordvintsev, Olah and Tyka 2015, "Inceptionism"): gradient ascent on the image to
amplify what a network's chosen layers respond to, across octaves, with random jitter so the
patterns do not lock to the pixel grid.

Networks:
- the default model's own discriminator (`assets/models/emoji64-discriminator.safetensors`,
  `Discriminator.features`, layers by index): it learned what emoji look like, so it dreams eyes,
  smiles and outlines into any frame, and DeepDream works out of the box;
- torchvision-format GoogLeNet (`googlenet-*.pth`, the classic look) and Inception v3
  (`inception_v3_google-*.pth`), layers by name (`inception4c`, `Mixed_6b`), rebuilt as the project's
  own modules in `dream_nets.py`; the file's keys say which network it holds.

Two modes. "frame" dreams every frame afresh from its input (offline renders, where each frame may
take its time). "feedback" is for live use: each frame starts from the new input plus `feedback` times
what the dream had added to the previous output (optionally zoomed and rotated a little, as in
dream-zoom videos), so the dream deepens over frames at a few ascent steps each. What is carried is
band-passed (colour washes and the finest ripples are left behind: they would grow into blobs and
stripes) and softly capped (`DETAIL_LIMIT`), so the picture stays bounded and keeps following its input.
`dream` is the pure function; `DeepDream` is the thin module a show's `[[filters]]` row builds.
Jitter comes from a generator seeded per call (and per frame since `reset()` in feedback mode), so
the same frames in the same order dream the same.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.filters import dream_nets
from engine.filters.dream_nets import DreamNetError
from engine.show import PROJECT_ROOT

DEFAULT_NETWORK = PROJECT_ROOT / "assets" / "models" / "emoji64-discriminator.safetensors"
MODES = ("frame", "feedback")
DETAIL_LIMIT = 0.25  # feedback mode: the most the carried dream may differ from the input


def _activations(features, x: torch.Tensor, layers: tuple) -> list[torch.Tensor]:
    """Integer layers: `features(x, depth)` returns the first `depth` activations (the discriminator).
    Named layers: `features(x, names)` returns those activations (GoogLeNet, Inception v3)."""
    if isinstance(layers[0], str):
        return features(x, list(layers))
    acts = features(x, max(layers) + 1)
    return [acts[i] for i in layers]


def dream(image: torch.Tensor, features, layers: tuple = (1, 2), steps: int = 8, step_size: float = 0.01,
          octaves: int = 2, octave_scale: float = 1.4, jitter: int = 2, strength: float = 1.0, seed: int = 0,
          min_side: int | None = None) -> torch.Tensor:
    """image [B, 3, H, W] in [0, 1] -> dreamed image, same shape, in [0, 1].

    `layers` are indices into `features(x, depth)` (the discriminator) or names for `features(x, names)`
    (GoogLeNet, Inception v3); the mean square of those activations is what the ascent increases.
    Each step's gradient is normalised by its mean magnitude (step size in image units, whatever the
    layer's scale); `strength` blends the dream over the original (0: untouched). `min_side` is the
    smallest side a coarse octave may have (default for integer layers: what the deepest one needs)."""
    assert image.ndim == 4 and image.shape[1] == 3, f"image must be [B, 3, H, W], got {list(image.shape)}"
    if strength <= 0 or steps <= 0:
        return image
    layers = tuple(layers)
    if min_side is None:
        min_side = 2 ** (max(layers) + 2) if not isinstance(layers[0], str) else 32
    gen = torch.Generator().manual_seed(seed)
    h, w = image.shape[-2:]
    with torch.inference_mode(False), torch.enable_grad():
        base = image.detach().clone()
        detail = torch.zeros_like(base)
        for octave in reversed(range(octaves)):  # coarse to fine, carrying the detail found so far
            size = (max(min_side, round(h / octave_scale**octave)), max(min_side, round(w / octave_scale**octave)))
            small = F.interpolate(base, size=size, mode="bilinear", align_corners=False)
            detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
            x = (small + detail).clamp(0, 1)
            for _ in range(steps):
                dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen))
                x = x.roll((dy, dx), dims=(2, 3)).detach().requires_grad_(True)
                loss = sum(a.pow(2).mean() for a in _activations(features, x, layers))
                (grad,) = torch.autograd.grad(loss, x)
                x = (x + step_size * grad / (grad.abs().mean() + 1e-8)).clamp(0, 1)
                x = x.detach().roll((-dy, -dx), dims=(2, 3))
            detail = x - small
        dreamed = F.interpolate(base, size=(h, w), mode="bilinear", align_corners=False) + \
            F.interpolate(detail, size=(h, w), mode="bilinear", align_corners=False)
    return torch.lerp(image, dreamed.clamp(0, 1).to(image.dtype), strength)


def warp(image: torch.Tensor, zoom: float = 1.0, rotate: float = 0.0) -> torch.Tensor:
    """image [B, C, H, W] zoomed by `zoom` (> 1: closer) and turned by `rotate` degrees about its
    centre, bilinear, edges reflected; identity when zoom is 1 and rotate 0."""
    if zoom == 1.0 and rotate == 0.0:
        return image
    b, _, h, w = image.shape
    a = math.radians(rotate)
    c, s = math.cos(a) / zoom, math.sin(a) / zoom
    # output pixel -> input pixel, in grid_sample's [-1, 1] coordinates (aspect ratio kept)
    theta = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]], dtype=image.dtype, device=image.device)
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, 1, h, w], align_corners=False)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def band_pass(x: torch.Tensor, radius: int) -> torch.Tensor:
    """x [B, C, H, W] lightly blurred (3 x 3) less its local mean over 2 * radius + 1 pixels (box blurs,
    edges replicated): the dream's detail without its colour wash (which would spread into blobs) and
    without its finest ripples (which would grow into stripes). radius 0: x unchanged."""
    if radius <= 0:
        return x
    local_mean = F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), 2 * radius + 1, stride=1)
    return F.avg_pool2d(F.pad(x, (1,) * 4, mode="replicate"), 3, stride=1) - local_mean


def load_network(path: str | Path | None = None, network: str | None = None) -> tuple[nn.Module, str]:
    """(network with `features`, frozen, in eval mode; its name) from a Masquerade model file (the
    discriminator) or a torchvision-format GoogLeNet / Inception v3 weights file. `network` is a check:
    "googlenet", "inception_v3", or a Masquerade architecture such as "dcgan-discriminator"."""
    from engine.generators import checkpoint

    path = Path(path) if path else DEFAULT_NETWORK
    if not path.is_file():
        raise DreamNetError(f"{path}: no such network file")
    if path.suffix == ".safetensors":
        try:
            card = checkpoint.read_card(path)
        except checkpoint.CheckpointError:
            card = None  # plain tensors, e.g. GoogLeNet saved as safetensors: the keys decide
        if card is not None:
            net, card = checkpoint.load(path)
            if not hasattr(net, "features"):
                raise DreamNetError(f"{path}: holds {card.architecture}, which has no features() to dream with; "
                                    f"DeepDream needs googlenet, inception_v3 or a discriminator")
            if network is not None and network != card.architecture:
                raise DreamNetError(f"{path}: holds {card.architecture}, not {network} as asked")
            return net.eval().requires_grad_(False), card.architecture
    return dream_nets.load(path, network)


class DeepDream(nn.Module):
    """`[[filters]] kind = "deepdream"`: the shipped discriminator by default, a GoogLeNet or Inception v3
    `.pth`, or another Masquerade model file whose module has `features()`."""

    scale = 1
    stateful = True  # feedback carries the last output; "frame" mode normalises its ascent over the whole batch
    controls = {
        "strength": (1.0, 0.0, 1.0),  # the dream over the frame it started from
        "feedback": (0.9, 0.0, 0.99),  # feedback mode: share of the previous output carried into each frame
        "step_size": (0.01, 0.0, 0.1),  # image change per ascent step
        "zoom": (1.0, 0.9, 1.1),  # feedback mode: zoom per frame (> 1: into the picture)
        "rotate": (0.0, -5.0, 5.0),  # feedback mode: degrees per frame
    }

    def __init__(self, path: str | Path | None = None, network: str | None = None, layers: list | None = None,
                 mode: str = "frame", steps: int = 8, step_size: float = 0.01, octaves: int = 2,
                 octave_scale: float = 1.4, jitter: int = 2, strength: float = 1.0, feedback: float = 0.9,
                 zoom: float = 1.0, rotate: float = 0.0, colour_radius: int = 4, seed: int = 0):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.net, self.network = load_network(path, network)
        self.layers = self._check_layers(layers)
        self.mode, self.seed, self.colour_radius = mode, seed, colour_radius
        self.options = dict(layers=self.layers, steps=steps, octaves=octaves, octave_scale=octave_scale,
                            jitter=jitter, min_side=getattr(self.net, "min_side", None))
        self.values = dict(strength=strength, feedback=feedback, step_size=step_size, zoom=zoom, rotate=rotate)
        self.previous: torch.Tensor | None = None  # feedback mode: the last output [B, 3, H, W]
        self.frame = 0  # feedback mode: frames since reset(), which seeds each frame's jitter

    def _check_layers(self, layers) -> tuple:
        names = getattr(self.net, "layer_names", None)
        if names is not None:  # GoogLeNet, Inception v3: layers by name
            layers = tuple(layers) if layers else self.net.default_layers
            if any(not isinstance(n, str) or n not in names for n in layers):
                raise ValueError(f"layers must be names of {self.network}'s layers ({', '.join(names)}), "
                                 f"got {list(layers)}")
            return layers
        layers = tuple(layers) if layers else (1, 2)
        count = len(self.net.features(torch.zeros(1, 3, self.net.resolution, self.net.resolution)))
        if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < count for i in layers):
            raise ValueError(f"layers must be indices 0..{count - 1} of {self.network}'s features, got {list(layers)}")
        return layers

    def train(self, mode: bool = True) -> DeepDream:
        super().train(mode)
        self.net.eval()  # batch norm statistics are the network's, never the frames'
        return self

    def reset(self) -> None:
        """Forget the accumulated dream: the next frame starts from its input alone."""
        self.previous, self.frame = None, 0

    def forward(self, image: torch.Tensor, strength: float | None = None, feedback: float | None = None,
                step_size: float | None = None, zoom: float | None = None, rotate: float | None = None) -> torch.Tensor:
        """image [B, 3, H, W] in [0, 1] -> dreamed, same shape; a control left None keeps its row value."""
        v = self.values
        strength = v["strength"] if strength is None else strength
        step_size = v["step_size"] if step_size is None else step_size
        if self.mode == "frame":
            return dream(image, self.net.features, step_size=step_size, strength=strength, seed=self.seed,
                         **self.options)
        feedback = v["feedback"] if feedback is None else feedback
        zoom = v["zoom"] if zoom is None else zoom
        rotate = v["rotate"] if rotate is None else rotate
        start = image
        if self.previous is not None and self.previous.shape == image.shape:  # a new size starts afresh
            residual = warp(self.previous.to(image), zoom, rotate) - image  # what the dream has added so far
            detail = band_pass(residual, self.colour_radius)
            detail = DETAIL_LIMIT * torch.tanh(detail / DETAIL_LIMIT)  # soft ceiling: no runaway to saturation
            start = (image + feedback * detail).clamp(0, 1)  # [B, 3, H, W]
        out = dream(start, self.net.features, step_size=step_size, strength=strength, seed=self.seed + self.frame,
                    **self.options)
        self.previous, self.frame = out.detach(), self.frame + 1
        return out
