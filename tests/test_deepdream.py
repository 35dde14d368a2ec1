"""DeepDream on the shipped discriminator: it amplifies what the chosen layers see, repeatably; in feedback
mode the dream builds up over frames, stays bounded and keeps following its input."""

import pytest
import torch
import torch.nn.functional as F

from engine import show as shows
from engine.filters.deepdream import DeepDream, dream, warp
from engine.frame import Tick
from engine.generators import checkpoint
from engine.pipeline import Pipeline
from engine.show import ShowError

from .conftest import DEFAULT_MODEL


@pytest.fixture(scope="module")
def frames():
    g, _ = checkpoint.load(DEFAULT_MODEL)
    with torch.no_grad():
        return g(torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(3)), truncation_psi=0.8)


def objective(net, image, layers):
    with torch.no_grad():
        acts = net.features(image, max(layers) + 1)
        return sum(acts[i].pow(2).mean() for i in layers).item()


def test_dreaming_raises_what_the_layers_respond_to(frames):
    f = DeepDream(layers=[1, 2], steps=6, octaves=1, jitter=0)
    out = f(frames)
    assert out.shape == frames.shape and 0 <= out.min() and out.max() <= 1
    assert objective(f.net, out, (1, 2)) > 1.2 * objective(f.net, frames, (1, 2))
    assert (out - frames).abs().mean() > 0.005


def test_strength_blends_and_zero_is_untouched(frames):
    f = DeepDream(strength=1.0)
    full = f(frames)
    half = DeepDream(strength=0.5)(frames)
    torch.testing.assert_close(half, torch.lerp(frames, full, 0.5))
    assert torch.equal(DeepDream(strength=0.0)(frames), frames)


def test_same_frame_same_dream(frames):
    f = DeepDream(jitter=3)
    assert torch.equal(f(frames), f(frames))  # jitter is seeded: offline renders repeat


def test_pure_function_and_module_agree(frames):
    f = DeepDream(layers=[0], steps=3)
    torch.testing.assert_close(f(frames), dream(frames, f.net.features, layers=(0,), steps=3))


def test_dream_in_a_show_and_a_bad_layer_named(tmp_path):
    path = tmp_path / "dream.toml"
    path.write_text('[[filters]]\nkind = "deepdream"\nsteps = 3\n')
    pipeline = Pipeline(shows.load(path), "cpu")
    with torch.inference_mode():  # the loop generates under inference mode; the dream still gets gradients
        image = pipeline.generate(Tick(0, 0.5)).image
    assert image.shape == (1, 3, 64, 64)
    path.write_text('[[filters]]\nkind = "deepdream"\nlayers = [9]\n')
    with pytest.raises(ShowError, match=r"#1 \(deepdream\): layers must be indices 0..3"):
        Pipeline(shows.load(path), "cpu")


@pytest.fixture(scope="module")
def small(frames):
    """Two different frames at 32 x 32: a tiny input keeps 1000 feedback frames fast."""
    return F.interpolate(frames, size=(32, 32), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def feedback_filter(**kw):
    return DeepDream(**{"mode": "feedback", "steps": 2, "octaves": 1, **kw}).eval()


def test_feedback_stays_bounded_and_follows_a_changing_input(small):
    a, b = small[:1], small[1:]
    f = feedback_filter(step_size=0.02, feedback=0.95)  # stronger than the show's, to provoke a runaway
    means, stds, deviations = [], [], []
    with torch.inference_mode():
        for t in range(1000):
            u = 0.5 - 0.5 * torch.cos(torch.tensor(t / 999 * torch.pi))  # a slow glide from a to b
            x = torch.lerp(a, b, u)
            out = f(x)
            assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1, t
            saturated = ((out < 0.004) | (out > 0.996)).float().mean().item()
            assert saturated < 0.25, f"frame {t}: {saturated:.0%} of values saturated"
            means.append(out.mean().item())
            stds.append(out.std().item())
            deviations.append((out - x).abs().mean().item())
    low, high = min(a.mean().item(), b.mean().item()), max(a.mean().item(), b.mean().item())
    assert low - 0.1 < min(means) and max(means) < high + 0.1  # no drift toward white or black
    assert 0.5 * min(a.std().item(), b.std().item()) < min(stds) and max(stds) < 0.45  # no collapse, no noise
    assert 0.01 < min(deviations[100:]) and max(deviations) < 0.2  # dreaming throughout, bounded
    assert (out - b).abs().mean() < 0.5 * (out - a).abs().mean()  # it has followed the input to b
    # the dream builds up: after many frames it is deeper than a single frame's
    assert deviations[-1] > 1.5 * deviations[0]


def test_feedback_follows_a_cut_and_reset_starts_afresh(small):
    a, b = small[:1], small[1:]
    f = feedback_filter()
    with torch.inference_mode():
        for _ in range(100):
            f(a)
        after_cut = [f(b) for _ in range(30)]
        assert (after_cut[-1] - b).abs().mean() < 0.25 * (after_cut[-1] - a).abs().mean()
        f.reset()
        fresh = f(b)
    assert f.frame == 1
    torch.testing.assert_close(fresh, dream(b, f.net.features, layers=(1, 2), steps=2, octaves=1, seed=0))


def test_feedback_repeats_frame_for_frame_and_carries_what_it_is_told(small):
    a = small[:1]
    runs = []
    for _ in range(2):
        f = feedback_filter(zoom=1.02, rotate=1.0)
        runs.append([f(a) for _ in range(5)])
    for x, y in zip(*runs):
        assert torch.equal(x, y)  # jitter is seeded per frame: offline renders repeat
    assert not torch.equal(runs[0][3], runs[0][4])  # and it moves on from frame to frame
    f = feedback_filter()
    f(a)
    alone = f(a, feedback=0.0)  # a live control: carry nothing, so this frame is its input's dream
    torch.testing.assert_close(alone, dream(a, f.net.features, layers=(1, 2), steps=2, octaves=1, seed=1))
    f.reset()
    assert torch.equal(f(a, strength=0.0), a)


def test_controls_follow_the_filter_contract():
    for name, (default, lo, hi) in DeepDream.controls.items():
        assert lo <= default <= hi, name
    f = DeepDream(mode="feedback", **{name: hi for name, (_, _, hi) in DeepDream.controls.items()})
    assert f.values == {name: hi for name, (_, _, hi) in DeepDream.controls.items()}
    with pytest.raises(ValueError, match="mode must be one of frame, feedback, got 'loop'"):
        DeepDream(mode="loop")


def test_warp_turns_and_zooms_about_the_centre():
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(warp(x, 1.0, 0.0), x)
    torch.testing.assert_close(warp(x, 1.0, 90.0), torch.rot90(x, 1, dims=(2, 3)), atol=1e-5, rtol=0)
    zoomed = warp(x, 2.0, 0.0)  # the centre 8 x 8, at twice the size
    torch.testing.assert_close(zoomed[..., ::2, ::2][..., 1:-1, 1:-1],
                               F.interpolate(x[..., 4:12, 4:12], scale_factor=2, mode="bilinear",
                                             align_corners=False)[..., ::2, ::2][..., 1:-1, 1:-1], atol=1e-5, rtol=0)
