"""DeepDream on the shipped discriminator: it amplifies what the chosen layers see, repeatably."""

import pytest
import torch

from engine import show as shows
from engine.filters.deepdream import DeepDream, dream
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
