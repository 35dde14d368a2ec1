"""An endless, never-repeating drift at a set pace: a random walk with momentum, made pure.

The latent turns in d/2 orthogonal planes of a seeded rotation Q, plane i at its own seeded rate
omega_i: z(t) = Q [r_1 cos(omega_1 t + phi_1), r_1 sin(...), r_2 cos(...), ...]. The rates are
incommensurate (random reals), so the path never closes; the radii r_i are a Gaussian sample's, so z
looks like one; and because the planes are orthogonal, |z| = sqrt(z_dim) and |dz/dt| = `step` exactly,
at every t: the walk neither leaves the Gaussian shell nor speeds up or stalls. `momentum` narrows the
spread of the rates (log-normal, sigma = 1.5 (1 - momentum)): near 1 the walk sweeps in long, nearly
straight arcs, near 0 slow swells carry quick wiggles at the same pace. The idea is random Fourier
features (Rahimi & Recht 2007) with orthogonal features; nothing is carried between calls, so any t
is one evaluation, live, offline or in a test.

Shapes: `step(tick) -> z [1, z_dim]`, float32, on the CPU; a pure function of `tick.t`.
"""

from __future__ import annotations

import math

import torch

from engine.frame import Tick
from engine.walks import _check

NAME = "drift"


class Drift:
    def __init__(self, z_dim: int, seed: int = 0, step: float | None = None, momentum: float = 0.5,
                 speed: float = 1.0):
        """step: distance z travels per second of show time at speed 1, exactly (default sqrt(z_dim)/10:
        about a radian on the sphere every 10 s); momentum: 0..0.9, smoothness of the path; speed:
        multiplies show time."""
        self.z_dim = _check.integer(NAME, "z_dim", z_dim, minimum=2)
        _check.integer(NAME, "seed", seed)
        self.step_size = math.sqrt(z_dim) / 10 if step is None else _check.number(NAME, "step", step, above=0)
        self.momentum = _check.number(NAME, "momentum", momentum, minimum=0, maximum=0.9)
        self.speed = _check.number(NAME, "speed", speed, minimum=0)
        self.config = dict(z_dim=z_dim, seed=seed, step=step, momentum=momentum, speed=speed)
        gen = torch.Generator().manual_seed(seed)
        d, planes = z_dim, z_dim // 2
        q, r = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
        self.q = q * torch.sign(torch.diagonal(r))  # [d, d], unique whatever LAPACK's sign convention
        g = torch.randn(d, generator=gen, dtype=torch.float64)
        radii = g[: 2 * planes].view(planes, 2).norm(dim=1)  # [planes]
        rest = g[2 * planes:].abs()  # [d % 2]: odd z_dim keeps one fixed axis
        scale = math.sqrt(d) / torch.cat([radii, rest]).norm()
        self.radii, self.rest = radii * scale, rest * scale
        sigma = 1.5 * (1 - self.momentum)
        sign = torch.randint(0, 2, (planes,), generator=gen, dtype=torch.float64) * 2 - 1
        rates = sign * torch.exp(sigma * torch.randn(planes, generator=gen, dtype=torch.float64))
        self.rates = rates * (self.step_size / (self.radii * rates).norm())  # [planes] rad/s: |dz/dt| = step
        self.phases = torch.rand(planes, generator=gen, dtype=torch.float64) * 2 * math.pi

    def step(self, tick: Tick) -> torch.Tensor:
        angle = self.rates * (tick.t * self.speed) + self.phases  # [planes]
        coords = torch.stack([self.radii * torch.cos(angle), self.radii * torch.sin(angle)], dim=1)  # [planes, 2]
        z = self.q @ torch.cat([coords.reshape(-1), self.rest])  # [d]
        return z.float()[None]  # [1, z_dim]
