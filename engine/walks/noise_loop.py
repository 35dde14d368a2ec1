"""A seamless loop of smooth periodic noise: z(t + period) == z(t), with no keyframes to rest on.

Each latent dimension is a sum of a few seeded sinusoids whose frequencies are whole numbers of cycles
per loop (octave o draws them from 2^o .. 2^(o+1) - 1, amplitude roughness^o), so the path closes on
itself exactly, the wrap included; it is Perlin's fractal-noise idea (Perlin 1985) made periodic. The
noise swings about a seeded centre by `radius`, and the sum is put back on the Gaussian shell
(norm sqrt(z_dim)), where GANs expect their latents (White 2016, arXiv:1609.04468).

Shapes: `step(tick) -> z [1, z_dim]`, float32, on the CPU; a pure function of `tick.t`.
"""

from __future__ import annotations

import math

import torch

from engine.frame import Tick
from engine.walks import _check

NAME = "noise_loop"


class NoiseLoop:
    def __init__(self, z_dim: int, seed: int = 0, period: float = 20.0, octaves: int = 3, roughness: float = 0.5,
                 radius: float = 1.0, speed: float = 1.0):
        """period: seconds per loop (at speed 1); octaves: layers of finer wiggles (1 = one smooth swing
        per dimension); roughness: 0..1, how strong each finer octave is next to the one before; radius:
        how far the loop strays from its seeded centre, about atan(radius) on the sphere (0 holds a
        still image, 1 swings some 45 degrees about it, 3 or more forgets it); speed: multiplies show
        time."""
        self.z_dim = _check.integer(NAME, "z_dim", z_dim, minimum=1)
        _check.integer(NAME, "seed", seed)
        self.period = _check.number(NAME, "period", period, above=0)
        self.octaves = _check.integer(NAME, "octaves", octaves, minimum=1, maximum=8)
        self.roughness = _check.number(NAME, "roughness", roughness, minimum=0, maximum=1)
        self.radius = _check.number(NAME, "radius", radius, minimum=0)
        self.speed = _check.number(NAME, "speed", speed, minimum=0)
        self.config = dict(z_dim=z_dim, seed=seed, period=period, octaves=octaves, roughness=roughness,
                           radius=radius, speed=speed)
        gen = torch.Generator().manual_seed(seed)
        d, n = z_dim, self.octaves
        self.centre = torch.randn(d, generator=gen, dtype=torch.float64)  # [d]
        self.cos = torch.randn(n, d, generator=gen, dtype=torch.float64)  # [octaves, d]
        self.sin = torch.randn(n, d, generator=gen, dtype=torch.float64)  # [octaves, d]
        low = 2 ** torch.arange(n)[:, None]  # [octaves, 1]
        self.cycles = (low + (torch.rand(n, d, generator=gen) * low).floor().long()).double()  # whole numbers
        amp = self.roughness ** torch.arange(n, dtype=torch.float64)
        self.amp = (amp / amp.norm())[:, None]  # [octaves, 1]: unit variance per dimension at every t

    def phase(self, t: float) -> float:
        """Show time -> fraction of the loop, in [0, 1)."""
        return math.fmod(t * self.speed / self.period, 1.0) % 1.0

    def step(self, tick: Tick) -> torch.Tensor:
        angle = 2 * math.pi * self.phase(tick.t) * self.cycles  # [octaves, d]
        noise = (self.amp * (self.cos * torch.cos(angle) + self.sin * torch.sin(angle))).sum(0)  # [d]
        v = self.centre + self.radius * noise
        z = v * (math.sqrt(self.z_dim) / v.norm().clamp_min(1e-12))
        return z.float()[None]  # [1, z_dim]
