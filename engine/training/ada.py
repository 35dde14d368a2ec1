"""Adaptive discriminator augmentation, ADA (Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data", arXiv:2006.06676).

Every augmentation is applied to each image with probability p, to reals and fakes alike, and is
differentiable in the image. p is steered by the overfitting heuristic r_t = E[sign(D(real))] (§3):
when the discriminator grows too sure of the reals (r_t above the target, 0.6), p rises; otherwise
it falls, at a rate that could take it from 0 to 1 in `speed_kimg` thousand images.

A subset of ADA's 'bgc' pipeline: x-flip, 90-degree rotations and integer translation ('blit'),
isotropic scaling and arbitrary rotation ('geom', one bilinear resampling with reflected borders), and
brightness, contrast and saturation ('colour'). Images are [B, 3, H, W] in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _chosen(b: int, p: float, device) -> torch.Tensor:
    return (torch.rand(b, device=device) < p).float()  # [B]: 1 where this augmentation applies


def augment(x: torch.Tensor, p: float) -> torch.Tensor:
    """Each augmentation independently per image with probability p; p = 0 returns x itself."""
    if p <= 0:
        return x
    b, _, h, w = x.shape
    dev = x.device
    eye = torch.eye(3, device=dev)[None].repeat(b, 1, 1)  # [B, 3, 3] output -> input coordinates

    def compose(m: torch.Tensor) -> None:
        nonlocal eye
        eye = eye @ m

    def matrix(a, bb, c, d, tx, ty) -> torch.Tensor:
        m = torch.zeros(b, 3, 3, device=dev)
        m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = a, bb, tx
        m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = c, d, ty
        m[:, 2, 2] = 1
        return m

    one, zero = torch.ones(b, device=dev), torch.zeros(b, device=dev)
    # blit: x-flip, rotation by k * 90 degrees, integer translation up to 1/8 of the side
    flip = 1 - 2 * _chosen(b, p, dev) * torch.randint(0, 2, (b,), device=dev)
    compose(matrix(flip, zero, zero, one, zero, zero))
    k = _chosen(b, p, dev) * torch.randint(0, 4, (b,), device=dev)
    cos, sin = torch.cos(k * math.pi / 2).round(), torch.sin(k * math.pi / 2).round()
    compose(matrix(cos, -sin, sin, cos, zero, zero))
    on = _chosen(b, p, dev)
    tx = (torch.randint(-(w // 8), w // 8 + 1, (b,), device=dev) * 2 / w) * on
    ty = (torch.randint(-(h // 8), h // 8 + 1, (b,), device=dev) * 2 / h) * on
    compose(matrix(one, zero, zero, one, tx, ty))
    # geom: isotropic scale (log-normal, std 0.2 * ln 2) and rotation (uniform, any angle)
    s = torch.exp2(torch.randn(b, device=dev) * 0.2 * _chosen(b, p, dev))
    compose(matrix(s, zero, zero, s, zero, zero))
    theta = (torch.rand(b, device=dev) * 2 - 1) * math.pi * _chosen(b, p, dev)
    compose(matrix(torch.cos(theta), -torch.sin(theta), torch.sin(theta), torch.cos(theta), zero, zero))
    moved = (eye - torch.eye(3, device=dev)).abs().amax(dim=(1, 2)) > 1e-6  # [B]
    if moved.any():
        grid = F.affine_grid(eye[:, :2], list(x.shape), align_corners=False)
        warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        x = torch.where(moved[:, None, None, None], warped, x)
    # colour: brightness (normal, std 0.2), contrast (log-normal, std 0.5 * ln 2), saturation (std ln 2)
    x = x + (torch.randn(b, 1, 1, 1, device=dev) * 0.2) * _chosen(b, p, dev)[:, None, None, None]
    c = torch.exp2(torch.randn(b, device=dev) * 0.5 * _chosen(b, p, dev))[:, None, None, None]
    x = (x - 0.5) * c + 0.5
    luma = x.mean(dim=1, keepdim=True)
    sat = torch.exp2(torch.randn(b, device=dev) * _chosen(b, p, dev))[:, None, None, None]
    return (x - luma) * sat + luma


class AdaptiveAugment:
    """The augmentation probability p and the r_t heuristic that steers it.

    `observe(d_real)` after every discriminator step; `adjust(images)` every `interval` steps with the
    number of real images seen since the last adjustment (all processes together when distributed).
    """

    def __init__(self, target: float = 0.6, speed_kimg: float = 100.0, interval: int = 4, p: float = 0.0):
        self.target, self.speed_kimg, self.interval, self.p = target, speed_kimg, interval, p
        self.sign_sum, self.count = 0.0, 0
        self.r_t: float | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return augment(x, self.p)

    def observe(self, d_real: torch.Tensor) -> None:
        self.sign_sum += d_real.detach().sign().sum().item()
        self.count += d_real.numel()

    def adjust(self, images: int, reduce=None) -> float:
        """r_t over what was observed; p += sign(r_t - target) * images / (speed_kimg * 1000).
        `reduce` sums (sign_sum, count) over processes (None: this process alone)."""
        totals = torch.tensor([self.sign_sum, float(self.count)], dtype=torch.float64)
        if reduce is not None:
            totals = reduce(totals)
        self.sign_sum, self.count = 0.0, 0
        if totals[1] <= 0:
            return self.p
        self.r_t = float(totals[0] / totals[1])
        sign = (self.r_t > self.target) - (self.r_t < self.target)
        step = sign * images / (self.speed_kimg * 1000)
        self.p = min(max(self.p + step, 0.0), 1.0)
        return self.p
