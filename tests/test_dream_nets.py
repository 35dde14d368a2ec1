"""GoogLeNet and Inception v3 for DeepDream: torchvision's key layout, its activations, clear errors.

tests/data/dream/ holds torchvision's own outputs for seeded weights (how they were made: its
README.md); `seeded_state` below regenerates those weights, so no large file is committed."""

from pathlib import Path

import numpy as np
import pytest
import torch

from engine import show as shows
from engine.filters import dream_nets
from engine.filters.deepdream import DeepDream, dream
from engine.filters.dream_nets import DreamNetError, GoogLeNet, InceptionV3
from engine.frame import Tick
from engine.pipeline import Pipeline

from .conftest import DEFAULT_MODEL

DATA = Path(__file__).parent / "data" / "dream"
AUX = ("aux1.", "aux2.", "AuxLogits.")


def seeded_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The reference weights: seed 0, then each tensor in sorted key order (see tests/data/dream/README.md)."""
    state = net.state_dict()
    torch.manual_seed(0)
    for key in sorted(state):
        t = state[key]
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith("running_var"):
            value = 0.5 + torch.rand(t.shape)
        elif t.ndim >= 2:
            value = torch.randn(t.shape) * (2 / (t.numel() / t.shape[0])) ** 0.5
        elif key.endswith("weight"):
            value = 1 + 0.05 * torch.randn(t.shape)
        else:
            value = 0.05 * torch.randn(t.shape)
        t.copy_(value)
    return state


@pytest.mark.parametrize("cls, layers", [
    (GoogLeNet, ["inception3a", "inception4c", "inception5b"]),
    (InceptionV3, ["Mixed_5d", "Mixed_6b", "Mixed_7c"]),
])
def test_activations_match_torchvision(cls, layers):
    net = cls(aux_logits=True)
    state = seeded_state(net)
    net = cls(aux_logits=True)
    net.load_state_dict(state, strict=True)  # torchvision's full key set, aux classifiers included
    net.eval()
    image = torch.from_numpy(np.load(DATA / "input.npy"))  # [1, 3, 96, 96] in [0, 1]
    prefix = {GoogLeNet: "googlenet", InceptionV3: "inception_v3"}[cls]
    with torch.no_grad():
        got = dict(zip(layers, net.features(image, layers)))
        got["logits"] = net(image)
    for name, value in got.items():
        expected = torch.from_numpy(np.load(DATA / f"{prefix}_{name}.npy"))
        assert value.shape == expected.shape, name
        scale = max(1.0, expected.abs().max().item())  # 1e-5 of the layer's range (activations reach ~30)
        torch.testing.assert_close(value, expected, atol=1e-5 * scale, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


def test_features_stop_at_the_deepest_layer_and_keep_the_order():
    net = GoogLeNet(num_classes=10).eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = net.features(image, ["inception4c", "conv1"])
    assert a.shape == (1, 512, 4, 4) and b.shape == (1, 64, 32, 32)
    with pytest.raises(ValueError, match="no layer 'mixed4c'"):
        net.features(image, ["mixed4c"])


def save(net, path, drop_aux=False):
    state = {k: v for k, v in net.state_dict().items() if not (drop_aux and k.startswith(AUX))}
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def googlenet_file(tmp_path_factory):
    net = GoogLeNet(num_classes=10, aux_logits=True)
    seeded_state(net)  # fills the net's own tensors: activations of a realistic size
    return save(net, tmp_path_factory.mktemp("nets") / "googlenet-test.pth")


def test_files_are_recognised_with_or_without_aux_keys(googlenet_file, tmp_path):
    net, name = dream_nets.load(googlenet_file)
    assert name == "googlenet" and net.config["aux_logits"] and net.config["num_classes"] == 10
    plain, _ = dream_nets.load(save(net, tmp_path / "plain.pth", drop_aux=True))
    assert not plain.config["aux_logits"] and not hasattr(plain, "aux1")
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(image), plain(image))
    v3, name = dream_nets.load(save(InceptionV3(num_classes=3), tmp_path / "v3.pth"))
    assert name == "inception_v3" and not v3.config["aux_logits"]


def test_bad_files_name_the_file_what_it_holds_and_what_was_asked(googlenet_file, tmp_path):
    with pytest.raises(DreamNetError, match=r"googlenet-test.pth: holds googlenet, not inception_v3 as asked"):
        DeepDream(path=googlenet_file, network="inception_v3")
    other = tmp_path / "other.pth"
    torch.save({"body.0.weight": torch.zeros(64, 3, 3, 3)}, other)
    with pytest.raises(DreamNetError, match=r"other.pth: holds no network DeepDream knows \(keys body.0.weight"
                                            r", \.\.\.\), not googlenet or inception_v3"):
        DeepDream(path=other)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(googlenet_file.read_bytes()[:5000])
    with pytest.raises(DreamNetError, match=r"broken.pth: not a readable PyTorch weights file"):
        DeepDream(path=broken)
    state = torch.load(googlenet_file, weights_only=True)
    state["inception4c.branch1.conv.weight"] = torch.zeros(5, 512, 1, 1)
    torch.save(state, tmp_path / "misfit.pth")
    with pytest.raises(DreamNetError, match=r"misfit.pth: looks like googlenet but its tensors do not fit"):
        DeepDream(path=tmp_path / "misfit.pth")
    with pytest.raises(DreamNetError, match=r"gone.pth: no such network file"):
        DeepDream(path=tmp_path / "gone.pth")
    with pytest.raises(DreamNetError, match=r"emoji64.safetensors: holds dcgan, which has no features"):
        DeepDream(path=DEFAULT_MODEL)
    with pytest.raises(ValueError, match=r"layers must be names of googlenet's layers \(conv1, .*\), got \[1\]"):
        DeepDream(path=googlenet_file, layers=[1])


def test_dreaming_with_googlenet_raises_the_named_layer(googlenet_file):
    f = DeepDream(path=googlenet_file, layers=["inception4c"], steps=4, octaves=1, jitter=0).eval()
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25

    def objective(x):
        with torch.no_grad():
            return f.net.features(x, ["inception4c"])[0].pow(2).mean().item()

    out = f(image)
    assert out.shape == image.shape and 0 <= out.min() and out.max() <= 1
    assert objective(out) > 1.2 * objective(image)
    torch.testing.assert_close(out, dream(image, f.net.features, layers=("inception4c",), steps=4, octaves=1,
                                          jitter=0, min_side=32))
    f.train()
    assert not f.net.training  # batch norm keeps the network's statistics


def test_googlenet_in_a_show_feedback_mode(googlenet_file, tmp_path):
    path = tmp_path / "dream.toml"
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[[filters]]\nkind = "deepdream"\npath = "{googlenet_file}"\n'
                    'mode = "feedback"\nlayers = ["inception3b"]\nsteps = 1\noctaves = 1\n')
    pipeline = Pipeline(shows.load(path), "cpu")
    with torch.inference_mode():
        first = pipeline.generate(Tick(0, 0.0)).image
        second = pipeline.generate(Tick(1, 1 / 30)).image
    assert first.shape == second.shape == (1, 3, 64, 64)
    assert pipeline.filters[0].frame == 2 and pipeline.filters[0].network == "googlenet"
