"""Latent walks: pure functions of show time, seamless, smooth and seeded."""

import pytest
import torch

from engine import walks
from engine.frame import Tick
from engine.walks.keyframes import slerp


def loop(**kw):
    cfg = dict(z_dim=128, seed=3, keyframes=5, seconds_per_keyframe=2.0)
    cfg.update(kw)
    return walks.create("keyframes", **cfg)


def z_at(walk, t):
    return walk.step(Tick(0, t))[0]


@pytest.mark.parametrize("easing", ["smooth", "linear"])
def test_loop_is_seamless_and_endless(easing):
    walk = loop(easing=easing)
    period = 5 * 2.0
    for t in [0.0, 1.3, 7.9]:
        torch.testing.assert_close(z_at(walk, t), z_at(walk, t + period), atol=1e-5, rtol=0)
        torch.testing.assert_close(z_at(walk, t), z_at(walk, t + 3 * period), atol=1e-4, rtol=0)


def test_passes_through_every_keyframe():
    walk = loop()
    for k in range(5):
        torch.testing.assert_close(z_at(walk, k * 2.0), walk.keys[k], atol=1e-5, rtol=0)


@pytest.mark.parametrize("easing", ["smooth", "linear"])
def test_small_time_steps_give_small_latent_steps(easing):
    """No jumps anywhere in the loop, the wrap-around included: what makes the walk look smooth."""
    walk = loop(easing=easing)
    dt = 1 / 60
    steps = [(z_at(walk, i * dt) - z_at(walk, (i + 1) * dt)).norm().item() for i in range(int(10 / dt) + 5)]
    typical = walk.keys.norm(dim=1).mean().item()
    assert max(steps) < 0.05 * typical
    assert min(steps) >= 0


def test_same_seed_same_walk_other_seed_other_walk():
    assert torch.equal(z_at(loop(seed=1), 3.3), z_at(loop(seed=1), 3.3))
    assert not torch.allclose(z_at(loop(seed=1), 3.3), z_at(loop(seed=2), 3.3))


def test_speed():
    fast, slow = loop(speed=2.0), loop(speed=1.0)
    torch.testing.assert_close(z_at(fast, 1.5), z_at(slow, 3.0))
    still = loop(speed=0.0)
    assert torch.equal(z_at(still, 0.0), z_at(still, 100.0))


def test_slerp_keeps_gaussian_norm_where_lerp_collapses():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(512, generator=g), torch.randn(512, generator=g)
    mid = slerp(a, b, 0.5)
    assert abs(mid.norm() - (a.norm() + b.norm()) / 2) < 1e-3
    assert torch.lerp(a, b, 0.5).norm() < 0.8 * mid.norm()


def test_unknown_walk_is_named():
    with pytest.raises(KeyError, match="spiral"):
        walks.create("spiral", z_dim=8)
