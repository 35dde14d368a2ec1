"""A seamless loop through seeded keyframe latents, joined by spherical interpolation.

Slerp (Shoemake 1985; White 2016, "Sampling Generative Networks", arXiv:1609.04468) keeps the
interpolants at the norm a Gaussian latent expects, where a straight line would pass through the
low-norm middle that GANs render as grey mush. The last keyframe leads back to the first, so the walk
never ends and never jumps.

Class walks (class-conditional models such as BigGAN): `classes = [207, 980, ...]` pairs keyframe k with
class `classes[k]`; between keyframes the class vector moves from one class's one-hot to the next's with the
same eased fraction as z (`classes_at`), so a (class, z) pair blends into the next one.
"""

from __future__ import annotations

import math

import torch

from engine.frame import Tick
from engine.walks import _check

NAME = "keyframes"


def slerp(a: torch.Tensor, b: torch.Tensor, u: float) -> torch.Tensor:
    """Spherical interpolation between latents [z_dim] (norms interpolated linearly too)."""
    na, nb = a.norm(), b.norm()
    cos = torch.clamp((a / na) @ (b / nb), -1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4:
        return torch.lerp(a, b, u)
    so = torch.sin(omega)
    direction = (torch.sin((1 - u) * omega) / so) * (a / na) + (torch.sin(u * omega) / so) * (b / nb)
    return direction * torch.lerp(na, nb, u)


class KeyframeLoop:
    def __init__(self, z_dim: int, seed: int = 0, keyframes: int | None = None, seconds_per_keyframe: float = 4.0,
                 speed: float = 1.0, easing: str = "smooth", classes: list[int] | None = None):
        if classes is not None:
            if not isinstance(classes, list | tuple) or len(classes) < 2:
                raise ValueError(f"{NAME}: option classes must be a list of at least 2 class numbers, got {classes!r}")
            for k in classes:
                _check.integer(NAME, "classes", k, minimum=0)
            if keyframes is not None and keyframes != len(classes):
                raise ValueError(f"{NAME}: option classes has {len(classes)} entries, one per keyframe, but "
                                 f"keyframes = {keyframes}")
            keyframes = len(classes)
        keyframes = 8 if keyframes is None else keyframes
        self.classes = list(classes) if classes is not None else None  # class of each keyframe, or None
        _check.integer(NAME, "keyframes", keyframes, minimum=2)
        _check.number(NAME, "seconds_per_keyframe", seconds_per_keyframe, above=0)
        _check.number(NAME, "speed", speed, minimum=0)
        if easing not in ("smooth", "linear"):
            raise ValueError(f"{NAME}: option easing must be \"smooth\" or \"linear\", got {easing!r}")
        self.z_dim = z_dim
        self.seconds_per_keyframe = seconds_per_keyframe
        self.speed = speed
        self.easing = easing
        gen = torch.Generator().manual_seed(seed)
        self.keys = torch.randn(keyframes, z_dim, generator=gen)  # [K, z_dim], fixed by the seed

    def position(self, t: float) -> tuple[int, float]:
        """Show time -> (keyframe index, fraction of the way to the next)."""
        phase = t * self.speed / self.seconds_per_keyframe
        k = math.floor(phase)
        u = phase - k
        if self.easing == "smooth":
            u = u * u * (3 - 2 * u)  # smoothstep: rests on each keyframe, never stops dead between
        return k % len(self.keys), u

    def jump(self, t: float, step: int = 0, to: int | None = None) -> float:
        """The walk time at which the walk rests on another keyframe: `step` keyframes on from the one
        it last passed, or keyframe `to` (0-based) of the current lap. A cut a VJ asks for by OSC;
        the walk goes on from there."""
        if self.speed == 0:
            return t
        lap_start = math.floor(t * self.speed / self.seconds_per_keyframe)
        k = lap_start + step if to is None else lap_start - lap_start % len(self.keys) + to % len(self.keys)
        return k * self.seconds_per_keyframe / self.speed

    def step(self, tick: Tick) -> torch.Tensor:
        k, u = self.position(tick.t)
        z = slerp(self.keys[k], self.keys[(k + 1) % len(self.keys)], u)
        return z[None]  # [1, z_dim]

    def classes_at(self, tick: Tick) -> list[tuple[int, float]] | None:
        """(class, weight) pairs at this tick: the two keyframes' classes, weighted as step() weights their z;
        None without classes."""
        if self.classes is None:
            return None
        k, u = self.position(tick.t)
        return [(self.classes[k], 1.0 - u), (self.classes[(k + 1) % len(self.classes)], u)]
