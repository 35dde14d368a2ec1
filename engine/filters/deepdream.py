"""DeepDream (Mordvintsev, Olah and Tyka 2015, "Inceptionism"): gradient ascent on the image to
amplify what a network's chosen layers respond to, across octaves, with random jitter so the
patterns do not lock to the pixel grid.

The network that ships with Masquerade is the default model's own discriminator
(`assets/models/emoji64-discriminator.safetensors`, `Discriminator.features`): it learned what emoji
look like, so it dreams eyes, smiles and outlines into any frame, and DeepDream works out of the box.
`dream` is the pure function; `DeepDream` is the thin module a show's `[[filters]]` row builds.
Jitter comes from a generator seeded per call, so a frame is still a pure function of its input.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.show import PROJECT_ROOT

DEFAULT_NETWORK = PROJECT_ROOT / "assets" / "models" / "emoji64-discriminator.safetensors"


def dream(image: torch.Tensor, features, layers: tuple[int, ...] = (1, 2), steps: int = 8,
          step_size: float = 0.01, octaves: int = 2, octave_scale: float = 1.4, jitter: int = 2,
          strength: float = 1.0, seed: int = 0) -> torch.Tensor:
    """image [B, 3, H, W] in [0, 1] -> dreamed image, same shape, in [0, 1].

    `features(x, depth)` returns the first `depth` activations; the mean square of those at `layers` is what the
    ascent increases. Each step's gradient is normalised by its mean magnitude (step size in image
    units, whatever the layer's scale); `strength` blends the dream over the original (0: untouched)."""
    assert image.ndim == 4 and image.shape[1] == 3, f"image must be [B, 3, H, W], got {list(image.shape)}"
    if strength <= 0 or steps <= 0:
        return image
    gen = torch.Generator().manual_seed(seed)
    h, w = image.shape[-2:]
    with torch.inference_mode(False), torch.enable_grad():
        base = image.detach().clone()
        detail = torch.zeros_like(base)
        for octave in reversed(range(octaves)):  # coarse to fine, carrying the detail found so far
            side = 2 ** (max(layers) + 2)  # the smallest image the deepest layer asked for still sees
            size = (max(side, round(h / octave_scale**octave)), max(side, round(w / octave_scale**octave)))
            small = F.interpolate(base, size=size, mode="bilinear", align_corners=False)
            detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
            x = (small + detail).clamp(0, 1)
            for _ in range(steps):
                dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen))
                x = x.roll((dy, dx), dims=(2, 3)).detach().requires_grad_(True)
                acts = features(x, max(layers) + 1)
                loss = sum(acts[i].pow(2).mean() for i in layers)
                (grad,) = torch.autograd.grad(loss, x)
                x = (x + step_size * grad / (grad.abs().mean() + 1e-8)).clamp(0, 1)
                x = x.detach().roll((-dy, -dx), dims=(2, 3))
            detail = x - small
        dreamed = F.interpolate(base, size=(h, w), mode="bilinear", align_corners=False) + \
            F.interpolate(detail, size=(h, w), mode="bilinear", align_corners=False)
    return torch.lerp(image, dreamed.clamp(0, 1).to(image.dtype), strength)


class DeepDream(nn.Module):
    """`[[filters]] kind = "deepdream"`: the shipped discriminator by default, or another
    Masquerade model file whose module has `features(image, depth) -> list of activations`."""

    scale = 1

    def __init__(self, path: str | Path | None = None, layers: list[int] | tuple[int, ...] = (1, 2),
                 steps: int = 8, step_size: float = 0.01, octaves: int = 2, jitter: int = 2,
                 strength: float = 1.0, seed: int = 0):
        super().__init__()
        from engine.generators import checkpoint

        self.net, card = checkpoint.load(path or DEFAULT_NETWORK)
        if not hasattr(self.net, "features"):
            raise ValueError(f"{card.path}: holds {card.architecture}, which has no features() to dream with")
        count = len(self.net.features(torch.zeros(1, 3, self.net.resolution, self.net.resolution)))
        if not layers or any(not 0 <= i < count for i in layers):
            raise ValueError(f"layers must be indices 0..{count - 1} of {card.architecture}'s features, got {layers}")
        self.options = dict(layers=tuple(layers), steps=steps, step_size=step_size, octaves=octaves,
                            jitter=jitter, strength=strength, seed=seed)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return dream(image, self.net.features, **self.options)
