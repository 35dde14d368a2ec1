"""The noise loop, the drift and the beat-locked keyframes: what a show needs from each, checked as a
viewer would notice it (seams, jumps, norms, timing on the beat), and purity: a frame is a pure function
of show time, whatever was asked before."""

import math
import random

import pytest
import torch

from engine import walks
from engine.frame import Tick

NEW = ["noise_loop", "drift", "beats"]
FPS = 60


def z_at(walk, t):
    return walk.step(Tick(0, t))[0]


def path(walk, times):
    return torch.stack([z_at(walk, t) for t in times])  # [T, z_dim]


def test_new_walks_are_registered():
    assert set(NEW) <= set(walks.names())


@pytest.mark.parametrize("name", NEW)
def test_same_time_same_latent_in_any_order(name):
    """Rendering frames out of order (a scrub, a second machine, a re-render) changes nothing."""
    times = [i * 0.37 for i in range(-20, 200)]
    ordered = path(walks.create(name, z_dim=16, seed=7), times)
    shuffled_times = times[:]
    random.Random(1).shuffle(shuffled_times)
    walk = walks.create(name, z_dim=16, seed=7)
    got = {t: z_at(walk, t) for t in shuffled_times}
    assert torch.equal(torch.stack([got[t] for t in times]), ordered)


@pytest.mark.parametrize("name", NEW)
def test_seed_picks_the_walk(name):
    a, b, c = (walks.create(name, z_dim=16, seed=s) for s in (1, 1, 2))
    assert torch.equal(z_at(a, 5.5), z_at(b, 5.5))
    assert not torch.allclose(z_at(a, 5.5), z_at(c, 5.5))


@pytest.mark.parametrize("name", ["noise_loop", "drift"])
@pytest.mark.parametrize("z_dim", [16, 17, 512])
def test_latents_stay_on_the_gaussian_shell(name, z_dim):
    zs = path(walks.create(name, z_dim=z_dim, seed=3), [i * 0.9 for i in range(300)])
    torch.testing.assert_close(zs.norm(dim=1), torch.full((300,), math.sqrt(z_dim)), atol=1e-3, rtol=1e-4)


# -- noise_loop --------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, dict(period=7.0, octaves=5, roughness=0.8), dict(speed=2.5, radius=3.0)])
def test_noise_loop_is_seamless(options):
    walk = walks.create("noise_loop", z_dim=64, seed=2, **options)
    period = walk.period / walk.speed
    for t in (0.0, 0.01, 1.7, period / 2, period - 1e-3, 123.4):
        torch.testing.assert_close(z_at(walk, t + period), z_at(walk, t), atol=1e-5, rtol=0)
        torch.testing.assert_close(z_at(walk, t + 5 * period), z_at(walk, t), atol=1e-5, rtol=0)
        torch.testing.assert_close(z_at(walk, t - period), z_at(walk, t), atol=1e-5, rtol=0)


@pytest.mark.parametrize("options", [{}, dict(period=5.0, octaves=4, roughness=1.0, radius=2.0)])
def test_noise_loop_has_no_jumps_the_wrap_included(options):
    walk = walks.create("noise_loop", z_dim=64, seed=5, **options)
    n = round(walk.period * FPS)
    zs = path(walk, [i / FPS for i in range(n + 10)])  # one loop and a few frames past the wrap
    steps = (zs[1:] - zs[:-1]).norm(dim=1)
    if not options:  # the default loop: a frame moves z by well under a twentieth of its norm
        assert steps.max() < 0.05 * math.sqrt(64)
    assert steps.max() < 4 * steps.mean()  # nowhere, the wrap included, faster than a few times the average
    assert steps[n - 3: n + 3].max() < 2 * steps.mean()  # the frames across the wrap look like any others


def test_noise_loop_actually_moves_and_radius_sets_how_far():
    def spread(radius):
        zs = path(walks.create("noise_loop", z_dim=128, seed=1, radius=radius), [i * 0.5 for i in range(40)])
        return (zs - zs.mean(0)).norm(dim=1).mean().item()

    assert spread(0.0) < 1e-5  # a still image
    assert 0.1 * math.sqrt(128) < spread(0.5) < spread(1.0) < spread(3.0)


# -- drift -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [dict(step=0.7), dict(step=3.0, momentum=0.0), dict(step=0.2, momentum=0.9),
                                     dict(step=1.0, speed=2.0)])
def test_drift_moves_at_step_per_second_never_faster(options):
    walk = walks.create("drift", z_dim=32, seed=9, **options)
    limit = options["step"] * options.get("speed", 1.0)
    h = 1e-3
    times = [i * 7.3 for i in range(200)]  # about 25 minutes of show
    speeds = ((path(walk, [t + h for t in times]) - path(walk, times)).norm(dim=1) / h)
    assert speeds.max() <= limit * (1 + 1e-3)
    assert speeds.min() >= limit * 0.99  # and it does not stall


def test_drift_default_step_scales_with_the_latent():
    for z_dim in (16, 512):
        walk = walks.create("drift", z_dim=z_dim, seed=0)
        speed = (z_at(walk, 1.001) - z_at(walk, 1.0)).norm().item() / 1e-3
        assert speed == pytest.approx(math.sqrt(z_dim) / 10, rel=1e-2)


def test_drift_never_repeats_and_wanders_far():
    walk = walks.create("drift", z_dim=16, seed=4, step=1.0)
    zs = path(walk, [float(i) for i in range(1500)])  # 25 minutes, one sample a second
    dist = torch.cdist(zs, zs)
    gap = torch.arange(1500)
    far_in_time = (gap[:, None] - gap[None, :]).abs() >= 10
    assert dist[far_in_time].min() > 0.05 * math.sqrt(16)  # never back on an earlier point
    assert dist[0].max() > 1.5 * math.sqrt(16)  # and not circling near its start: it crosses the sphere


def test_drift_momentum_straightens_the_path():
    def turning(momentum):  # mean |d2z/dt2| at the same pace
        walk = walks.create("drift", z_dim=64, seed=2, step=1.0, momentum=momentum)
        zs = path(walk, [i * 0.05 for i in range(2000)])
        return (zs[2:] - 2 * zs[1:-1] + zs[:-2]).norm(dim=1).mean().item() / 0.05**2

    assert turning(0.9) < turning(0.5) < turning(0.0)


def test_drift_speed_is_a_time_scale():
    fast, slow = walks.create("drift", z_dim=16, speed=2.0), walks.create("drift", z_dim=16)
    torch.testing.assert_close(z_at(fast, 3.0), z_at(slow, 6.0))
    still = walks.create("drift", z_dim=16, speed=0.0)
    assert torch.equal(z_at(still, 0.0), z_at(still, 99.0))


# -- beats -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("downbeat", [0.0, 0.25, -3.1])
def test_beats_cut_on_the_beat_and_land_after_the_transition(downbeat):
    walk = walks.create("beats", z_dim=16, seed=1, bpm=120, beats_per_keyframe=2, downbeat=downbeat,
                        transition=0.1, keyframes=5)
    assert walk.interval == 1.0  # 2 beats at 120 bpm
    keys = walk.keys
    for n in range(-3, 12):
        cut = downbeat + n
        before, after = z_at(walk, cut - 1e-3), z_at(walk, cut + 0.1 + 1e-3)
        assert torch.equal(before, keys[(n - 1) % 5])  # holding the old keyframe up to the beat
        assert torch.equal(after, keys[n % 5])  # landed on the new one, `transition` after the beat
        assert torch.equal(z_at(walk, cut + 0.6), keys[n % 5])  # and holding it
        moving = z_at(walk, cut + 0.05)
        assert (moving - before).norm() > 0.1 and (moving - after).norm() > 0.1
        assert not torch.equal(z_at(walk, cut + 1e-4), before)  # the move starts on the beat itself


def test_beats_real_tempo_and_hard_cut():
    walk = walks.create("beats", z_dim=16, seed=0, bpm=128, beats_per_keyframe=4, transition=0.0)
    interval = 4 * 60 / 128  # 1.875 s a bar
    for n in range(1, 40):
        cut = n * interval
        assert torch.equal(z_at(walk, cut - 1e-4), walk.keys[(n - 1) % 8])
        assert torch.equal(z_at(walk, cut + 1e-4), walk.keys[n % 8])


def test_beats_transition_is_smooth_at_60_fps():
    walk = walks.create("beats", z_dim=64, seed=3, bpm=100, beats_per_keyframe=1, transition=0.3)
    zs = path(walk, [i / FPS for i in range(FPS * 4)])
    steps = (zs[1:] - zs[:-1]).norm(dim=1)
    jump = (walk.keys[1] - walk.keys[0]).norm()
    assert steps.max() < 0.3 * jump  # eased over 18 frames, not cut
    for i, step in enumerate(steps.tolist()):
        start, end = (i / FPS - walk.downbeat) % walk.interval, ((i + 1) / FPS - walk.downbeat) % walk.interval
        if walk.transition + 1e-9 < start < end:  # both frames in the same hold
            assert step == 0


# -- options -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, option, value", [
    ("noise_loop", "period", 0.0), ("noise_loop", "octaves", 0), ("noise_loop", "octaves", 2.5),
    ("noise_loop", "roughness", 1.5), ("noise_loop", "radius", -1.0), ("noise_loop", "period", float("nan")),
    ("drift", "step", -0.1), ("drift", "momentum", 0.95), ("drift", "speed", "fast"), ("drift", "z_dim", 1),
    ("beats", "bpm", 0), ("beats", "beats_per_keyframe", 0), ("beats", "transition", 2.0),
    ("beats", "keyframes", 1), ("beats", "downbeat", float("inf")), ("beats", "transition", True),
])
def test_bad_option_values_are_named(name, option, value):
    args = dict(z_dim=16, seed=0)
    args[option] = value
    with pytest.raises(ValueError, match=f"{name}: option {option} must"):
        walks.create(name, **args)


@pytest.mark.parametrize("name", NEW)
def test_unknown_options_are_named(name):
    with pytest.raises(TypeError, match="wobble"):
        walks.create(name, z_dim=16, wobble=3)
