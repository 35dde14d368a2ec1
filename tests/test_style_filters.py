"""Style transfer and CycleGAN filters: the networks compute what the original code computed
(tests/data/style/README.md says how the references were made), files are recognised by their keys,
`blend` and `stabilise` do what they say, and the style that ships with Masquerade styles frames."""

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from engine import filters
from engine.filters.cyclegan import CycleGAN, ResnetGenerator, load_cyclegan, translate
from engine.filters.img2img import WeightsError
from engine.filters.style import StyleTransfer, TransformerNet, load_style, stylise
from engine.generators import checkpoint

from .conftest import DEFAULT_MODEL, ROOT

DATA = Path(__file__).resolve().parent / "data" / "style"
SHIPPED = ROOT / "assets" / "models" / "style-stained-glass.safetensors"
CYCLEGAN_CASES = {
    "cyclegan_ngf8_9blocks_instance": dict(ngf=8, blocks=9, norm="instance", dropout=False),
    "cyclegan_ngf4_6blocks_batch_dropout": dict(ngf=4, blocks=6, norm="batch", dropout=True),
}


def npy(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(DATA / name))


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"{list(a.shape)} != {list(b.shape)}"
    return (a - b).abs().max().item()


def seeded_weights(shapes: dict[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    """Weights from numpy's frozen legacy generator, key by key in sorted order; the reference output
    was made by loading the same numbers into the original TransformerNet (README.md)."""
    rng = np.random.RandomState(seed)
    out = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        x = rng.standard_normal(shape)
        if key.endswith("weight") and len(shape) == 4:
            x = x / np.sqrt(np.prod(shape[1:]))
        elif key.endswith("weight"):
            x = 1 + 0.1 * x
        elif key.endswith("running_var"):
            x = 0.5 + np.abs(x)
        else:
            x = 0.1 * x
        out[key] = torch.from_numpy(x.astype(np.float32))
    return out


def examples_style_file(folder: Path) -> Path:
    """A full-size TransformerNet `.pth` as the PyTorch examples' published styles are: a plain state
    dict, with the stale instance-norm statistics an old PyTorch saved."""
    shapes = {k: v.shape for k, v in TransformerNet().state_dict().items()}
    state = seeded_weights(shapes, 5)
    for norm in ("in1", "in3", "res2.in1", "res5.in2"):
        c = state[f"{norm}.weight"].shape[0]
        state |= {f"{norm}.running_mean": torch.zeros(c), f"{norm}.running_var": torch.ones(c)}
    path = folder / "mosaic-like.pth"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def frames():
    g, _ = checkpoint.load(DEFAULT_MODEL)
    with torch.no_grad():
        return g(torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(3)), truncation_psi=0.8)


# -- fidelity to the original implementations ------------------------------------------------------

def test_transformer_net_matches_pytorch_examples(tmp_path):
    net = load_style(examples_style_file(tmp_path))  # stale running_* keys dropped, strict load
    assert net.config == dict(width=32, blocks=5)
    assert sum(p.numel() for p in net.parameters()) == 1_679_235  # the original's count
    with torch.no_grad():
        y = net(npy("transformer_net_seed5_input.npy"))  # [1, 3, 32, 40], 0..255 in, unclamped out
    assert max_error(y, npy("transformer_net_seed5_output.npy")) < 1e-5


@pytest.mark.parametrize("name", sorted(CYCLEGAN_CASES))
def test_resnet_generator_matches_junyanz(name):
    net = load_cyclegan(DATA / f"{name}.safetensors")
    assert net.config == dict(in_channels=3, out_channels=3, **CYCLEGAN_CASES[name])
    x = npy("cyclegan_input.npy")  # [1, 3, 32, 40] in [-1, 1]
    with torch.no_grad():
        y = net(x)
    expected = npy(f"{name}_output.npy")
    assert max_error(y, expected) < 1e-5
    # the filter's own scaling: [0, 1] in and out
    assert max_error(translate((x + 1) / 2, net), ((expected + 1) / 2).clamp(0, 1)) < 1e-5


def test_stale_instance_norm_statistics_of_old_cyclegan_files_are_dropped(tmp_path):
    state = load_file(str(DATA / "cyclegan_ngf8_9blocks_instance.safetensors"))
    state |= {"model.2.running_mean": torch.zeros(8), "model.2.running_var": torch.ones(8),
              "model.10.conv_block.2.running_mean": torch.zeros(32)}
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "latest_net_G_A.pth")  # DataParallel
    net = load_cyclegan(tmp_path / "latest_net_G_A.pth")
    with torch.no_grad():
        y = net(npy("cyclegan_input.npy"))
    assert max_error(y, npy("cyclegan_ngf8_9blocks_instance_output.npy")) < 1e-5


# -- recognising files ------------------------------------------------------------------------------

def test_width_and_blocks_are_read_from_the_tensors(tmp_path):
    torch.manual_seed(0)
    net = TransformerNet(width=4, blocks=2).eval()
    save_file(net.state_dict(), str(tmp_path / "narrow.safetensors"))
    loaded = load_style(tmp_path / "narrow.safetensors")
    assert loaded.config == dict(width=4, blocks=2)
    x = torch.rand(1, 3, 16, 12) * 255
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), atol=0, rtol=0)


def test_cyclegan_file_given_to_style_names_both_networks():
    path = DATA / "cyclegan_ngf8_9blocks_instance.safetensors"
    with pytest.raises(WeightsError) as e:
        StyleTransfer(path)
    message = str(e.value)
    assert path.name in message and "ResnetGenerator (9 blocks, ngf 8" in message
    assert "not a fast-neural-style TransformerNet" in message


def test_style_file_given_to_cyclegan_names_both_networks(tmp_path):
    path = examples_style_file(tmp_path)
    with pytest.raises(WeightsError, match=r"mosaic-like\.pth: holds a fast-neural-style TransformerNet "
                                           r"\(width 32, 5 residual blocks\), not a CycleGAN/pix2pix ResnetGenerator"):
        CycleGAN(path)


@pytest.mark.parametrize("kind", ["style", "cyclegan"])
def test_super_resolution_weights_are_named(tmp_path, kind):
    sr = filters.create("superres-compact", num_feat=8, num_conv=2, scale=4, activation="prelu")
    torch.save({"params": sr.state_dict()}, tmp_path / "realesr-like.pth")
    with pytest.raises(WeightsError, match=r"realesr-like\.pth: holds superres-compact \(x4 super-resolution\), not "):
        filters.create(kind, path=tmp_path / "realesr-like.pth")


def test_unknown_and_missing_files_are_named(tmp_path):
    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match=r"other\.pth: holds no network Masquerade knows \(keys encoder\.weight"):
        StyleTransfer(tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="absent.pth: no such weights file"):
        CycleGAN(tmp_path / "absent.pth")


def test_a_truncated_key_set_is_not_taken_for_the_network(tmp_path):
    state = TransformerNet(width=4, blocks=2).state_dict()
    del state["res2.in2.bias"]
    assert TransformerNet.config_from_state_dict(state) is None
    state = ResnetGenerator(ngf=4, blocks=2).state_dict()
    state["model.1.weight"] = torch.zeros(4, 3, 5, 5)
    assert ResnetGenerator.config_from_state_dict(state) is None


# -- the filters: contract, sizes, blend -----------------------------------------------------------

@pytest.fixture(scope="module")
def small_style(tmp_path_factory):
    torch.manual_seed(1)
    net = TransformerNet(width=8, blocks=2)
    for m in net.modules():  # a livelier network than the default init: outputs spread over 0..255
        if isinstance(m, torch.nn.InstanceNorm2d):
            torch.nn.init.normal_(m.weight, 1.0, 0.3)
    with torch.no_grad():
        net.deconv3.conv2d.weight.mul_(60)
        net.deconv3.conv2d.bias.fill_(128)
    path = tmp_path_factory.mktemp("style") / "small.pth"
    torch.save(net.state_dict(), path)
    return path


def test_filters_follow_the_contract(small_style):
    for kind, cls, path in (("style", StyleTransfer, small_style),
                            ("cyclegan", CycleGAN, DATA / "cyclegan_ngf4_6blocks_batch_dropout.safetensors")):
        assert filters.get(kind) is cls and cls.scale == 1
        assert cls.controls == {"blend": (1.0, 0.0, 1.0), "stabilise": (0.0, 0.0, 0.95)}
        f = filters.create(kind, path=path, blend=0.25, stabilise=0.5)
        assert (f.blend, f.stabilise) == (0.25, 0.5)
        for size in [(64, 64), (13, 22), (3, 5)]:  # any size: padded to whole stride-2 cells, cropped
            x = torch.rand(2, 3, *size)
            y = f(x, blend=1.0, stabilise=0.0)
            assert y.shape == x.shape and y.dtype == torch.float32 and 0 <= y.min() and y.max() <= 1


def test_module_and_function_agree_and_blend_mixes(small_style):
    f = StyleTransfer(small_style)
    x = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(0))
    styled = stylise(x, f.net)
    torch.testing.assert_close(f(x), styled, atol=0, rtol=0)
    assert (styled - x).abs().mean() > 0.05
    torch.testing.assert_close(f(x, blend=0.0), x, atol=0, rtol=0)
    torch.testing.assert_close(f(x, blend=0.5), (x + styled) / 2, atol=1e-6, rtol=0)
    torch.testing.assert_close(StyleTransfer(small_style, blend=0.5)(x), (x + styled) / 2, atol=1e-6, rtol=0)


# -- temporal stabilisation ------------------------------------------------------------------------

def slow_sequence(frames: torch.Tensor, n: int = 16) -> list[torch.Tensor]:
    """A slow morph between two GAN frames, 1/60 of the way per frame, with a little grain (1%) that
    changes every frame, like a camera's or a dithered walk's: the network turns the grain into
    flicker."""
    a, b = frames[:1], frames[1:]
    gen = torch.Generator().manual_seed(4)
    return [(torch.lerp(a, b, i / 60) + 0.01 * torch.randn(a.shape, generator=gen)).clamp(0, 1) for i in range(n)]


def frame_to_frame(outputs: list[torch.Tensor]) -> float:
    return float(np.mean([(p - q).abs().mean().item() for p, q in zip(outputs, outputs[1:])]))


@pytest.mark.parametrize("kind", ["style", "cyclegan"])
def test_stabilise_reduces_flicker_on_a_slow_input(frames, small_style, kind):
    path = small_style if kind == "style" else DATA / "cyclegan_ngf8_9blocks_instance.safetensors"
    seq = slow_sequence(frames)
    plain = filters.create(kind, path=path)
    steady = filters.create(kind, path=path, stabilise=0.8)
    raw = [plain(x) for x in seq]
    held = [steady(x) for x in seq]
    assert frame_to_frame(held) < 0.5 * frame_to_frame(raw)
    # and it still follows the input: the last frame is nearer its own styling than the first frame's
    assert (held[-1] - raw[-1]).abs().mean() < (raw[0] - raw[-1]).abs().mean()


def test_a_still_input_converges_to_the_unstabilised_output(frames, small_style):
    f = StyleTransfer(small_style, stabilise=0.9)
    f(frames[1:])  # a different picture first: the state holds its styling
    x = frames[:1]
    for _ in range(150):
        y = f(x)
    assert max_error(y, f(x, stabilise=0.0)) < 1e-4


def test_a_cut_does_not_smear_and_reset_forgets(frames, small_style):
    f = StyleTransfer(small_style, stabilise=0.95)
    plain = StyleTransfer(small_style)
    a, b = frames[:1], 1 - frames[1:]  # b differs from a by far more than the threshold almost everywhere
    for _ in range(5):
        f(a)
    changed = ((a - b).abs().mean(dim=1, keepdim=True) > 0.3).expand(-1, 3, -1, -1)
    cut = f(b)
    assert (cut - plain(b))[changed].abs().max() < 1e-6  # pixels whose input changed take the new style at once
    f(a, stabilise=0.95)
    f.reset()
    torch.testing.assert_close(f(b), plain(b), atol=0, rtol=0)  # no past after reset()


# -- the style that ships with Masquerade ------------------------------------------------------------

@pytest.mark.skipif(not SHIPPED.is_file(), reason=f"{SHIPPED.name} has not been trained yet")
def test_shipped_style_paints_gan_frames_in_its_colours(frames):
    from engine.training.style import gram, stained_glass

    card = checkpoint.read_card(SHIPPED)
    assert card.architecture == "style-transformer" and card.provenance["steps"] > 0
    f = StyleTransfer(SHIPPED)
    y = f(frames)
    assert y.shape == frames.shape
    assert (y - frames).abs().mean() > 0.1  # visibly changed
    target = gram(stained_glass())  # the style image's colour statistics
    before = (gram(frames) - target).pow(2).mean()
    after = (gram(y) - target).pow(2).mean()
    assert after < 0.5 * before
    # and the picture is still there: styled frames of two latents differ as the frames do
    assert (y[0] - y[1]).abs().mean() > 0.05


def test_styled_show_builds_its_filter():
    from engine import show as shows

    show = shows.load(ROOT / "shows" / "styled.toml")
    (stage,) = show.filters
    assert stage.kind == "style"
    path = show.resolve(str(stage.args["path"]))
    assert path.resolve() == SHIPPED
    assert stage.controls() == {"blend": (1.0, 0.0, 1.0), "stabilise": (0.6, 0.0, 0.95)}


@pytest.mark.skipif(not SHIPPED.is_file(), reason=f"{SHIPPED.name} has not been trained yet")
def test_styled_show_paints_the_walk():
    import dataclasses

    from engine import show as shows
    from engine.frame import Tick
    from engine.pipeline import Pipeline

    show = shows.load(ROOT / "shows" / "styled.toml")
    styled, plain = Pipeline(show, "cpu"), Pipeline(dataclasses.replace(show, filters=[], bindings=[]), "cpu")
    styled.reset_filters()
    tick = Tick(0, 0.0)
    frame = styled.generate(tick).image  # [1, 3, 64, 64]; the first frame after a reset has no past
    expected = StyleTransfer(SHIPPED)(plain.generate(tick).image)
    assert frame.shape == (1, 3, 64, 64)
    torch.testing.assert_close(frame, expected, atol=1e-6, rtol=0)
