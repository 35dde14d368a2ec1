"""Super-resolution filters: published weights load into our own modules and compute what the original
code computed; files are recognised by their keys; tiles join without seams."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import filters
from engine.filters.superres import SuperRes, SuperResError, load_sr, read_state_dict, upscale

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"
WEIGHTS, REFERENCE = FIXTURES / "weights", FIXTURES / "reference"
COMPACT_X4 = WEIGHTS / "realesr-animevideov3.pth"
COMPACT_X2 = WEIGHTS / "RealESRGANv2-animevideo-xsx2.pth"
SRGAN_X4 = WEIGHTS / "srgan-leftthomas-netG_epoch_4_100.pth"
DCGAN = WEIGHTS / "dcgan-mnist-generator.pth"

needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(),
                                    reason=f"third-party weight fixtures not found at {FIXTURES}")


def reference(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(REFERENCE / name))


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"{list(a.shape)} != {list(b.shape)}"
    return (a - b).abs().max().item()


# -- fidelity to the original implementations ------------------------------------------------------

@needs_fixtures
def test_compact_net_matches_real_esrgan():
    model, info = load_sr(COMPACT_X4)
    x = reference("realesr-animevideov3.input.npy")  # [1, 3, 64, 64]
    with torch.no_grad():
        y = model(x)  # not clamped, like the reference
    assert max_error(y, reference("realesr-animevideov3.output.npy")) < 1e-5


@needs_fixtures
def test_srgan_matches_leftthomas():
    model, info = load_sr(SRGAN_X4)
    x = reference("realesr-animevideov3.input.npy")
    with torch.no_grad():
        y = model(x)
    assert max_error(y, reference("srgan-x4.output.npy")) < 1e-5


@needs_fixtures
def test_x2_compact_upscales_a_picture():
    model, info = load_sr(COMPACT_X2)
    assert (info.architecture, info.scale) == ("superres-compact", 2)
    x = F.interpolate(reference("realesr-animevideov3.input.npy"), size=(32, 32), mode="area")
    y = upscale(x, model)
    assert y.shape == (1, 3, 64, 64) and 0 <= y.min() and y.max() <= 1
    # the same picture, restyled (the anime model raises contrast): shrunk back it follows the input
    # closely, and it is not a plain nearest-neighbour upscale
    correlation = torch.corrcoef(torch.stack([F.avg_pool2d(y, 2).flatten(), x.flatten()]))[0, 1]
    assert correlation > 0.95
    assert (y - F.interpolate(x, scale_factor=2, mode="nearest")).abs().mean() > 1e-3


# -- recognising files ------------------------------------------------------------------------------

@needs_fixtures
@pytest.mark.parametrize("path, architecture, config", [
    (COMPACT_X4, "superres-compact", dict(scale=4, num_feat=64, num_conv=16, activation="prelu")),
    (COMPACT_X2, "superres-compact", dict(scale=2, num_feat=64, num_conv=16, activation="prelu")),
    (SRGAN_X4, "superres-srgan", dict(scale=4, num_feat=64)),
])
def test_files_are_recognised(path, architecture, config):
    model, info = load_sr(path)
    assert info.architecture == architecture and info.scale == config["scale"]
    assert {k: info.config[k] for k in config} == config
    assert info.parameters == sum(p.numel() for p in model.parameters()) > 0
    assert not model.training


@needs_fixtures
def test_wrong_architecture_names_file_and_both_networks():
    with pytest.raises(SuperResError) as e:
        load_sr(SRGAN_X4, architecture="superres-compact")
    message = str(e.value)
    assert SRGAN_X4.name in message and "superres-srgan" in message and "superres-compact" in message
    with pytest.raises(SuperResError, match=r"realesr-animevideov3\.pth.*superres-compact.*not superres-rrdb"):
        load_sr(COMPACT_X4, architecture="superres-rrdb")


@needs_fixtures
def test_other_kind_of_network_is_named():
    with pytest.raises(SuperResError, match=r"dcgan-mnist-generator\.pth: holds no super-resolution network"):
        load_sr(DCGAN)


@needs_fixtures
@pytest.mark.parametrize("source", [COMPACT_X4, SRGAN_X4], ids=["zip", "legacy"])
def test_truncated_file_is_named(tmp_path, source):
    cut = tmp_path / f"cut-{source.name}"
    cut.write_bytes(source.read_bytes()[:1000])
    with pytest.raises(SuperResError, match=rf"cut-{source.name}: not a readable PyTorch weights file"):
        load_sr(cut)


def test_file_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"params": {"body.0.weight": torch.zeros(1)}, "hook": Path("x")}, path)  # a class, not a tensor
    with pytest.raises(SuperResError, match="pickled.pth: refused, loading it would run code"):
        read_state_dict(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SuperResError, match="nothing.pth: no such weights file"):
        load_sr(tmp_path / "nothing.pth")


# -- every network, over the registry ---------------------------------------------------------------

SMALL = {
    "superres-compact": dict(num_feat=8, num_conv=3, scale=3, activation="prelu"),
    "superres-rrdb": dict(num_feat=8, num_block=2, num_grow_ch=4, scale=2),
    "superres-srgan": dict(num_feat=8, scale=2, tail="batchnorm"),
}


def test_every_network_is_registered_with_a_small_config():
    assert filters.names("superres-*") == sorted(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_network_recognises_its_own_weights_and_no_other(tmp_path, name):
    torch.manual_seed(0)
    net = filters.create(name, **SMALL[name]).eval()
    path = tmp_path / f"{name}.pth"
    torch.save({"params_ema": net.state_dict(), "params": {}}, path)
    model, info = load_sr(path)
    assert info.architecture == name and info.config == net.config
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), atol=0, rtol=0)
    assert model(x).shape == (1, 3, 12 * net.scale, 16 * net.scale)
    for other in set(SMALL) - {name}:
        assert filters.get(other).config_from_state_dict(net.state_dict()) is None


def test_compact_relu_or_leakyrelu_must_be_named(tmp_path):
    net = filters.create("superres-compact", num_feat=8, num_conv=2, scale=2, activation="leakyrelu")
    path = tmp_path / "compact-lrelu.pth"
    torch.save({"params": net.state_dict()}, path)
    with pytest.raises(SuperResError, match="compact-lrelu.pth: .*pass activation="):
        load_sr(path)
    model, info = load_sr(path, activation="leakyrelu")
    x = torch.rand(1, 3, 8, 8) - 0.5
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), atol=0, rtol=0)


@needs_fixtures
def test_activation_contradicting_the_weights_is_an_error():
    with pytest.raises(SuperResError, match=r"realesr-animevideov3\.pth: .*'prelu', not 'relu'"):
        load_sr(COMPACT_X4, activation="relu")


# -- RRDBNet: the original key layout, built independently of our module ---------------------------

def original_rrdb_state(scale: int, num_feat: int = 64, num_block: int = 23, grow: int = 32) -> dict:
    """Names and shapes as basicsr's RRDBNet(3, 3, scale, num_feat, num_block, grow) writes them."""
    def conv(name, c_in, c_out):
        return {f"{name}.weight": torch.randn(c_out, c_in, 3, 3) * 0.02, f"{name}.bias": torch.zeros(c_out)}

    in_ch = {4: 3, 2: 12, 1: 48}[scale]
    state = conv("conv_first", in_ch, num_feat)
    for b in range(num_block):
        for r in (1, 2, 3):
            for i in range(1, 6):
                state |= conv(f"body.{b}.rdb{r}.conv{i}", num_feat + (i - 1) * grow, grow if i < 5 else num_feat)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        state |= conv(name, num_feat, num_feat)
    return state | conv("conv_last", num_feat, 3)


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_rrdb_has_the_original_key_layout(scale):
    expected = original_rrdb_state(scale)
    ours = filters.create("superres-rrdb", scale=scale).state_dict()  # Real-ESRGAN x4plus / x2plus size
    assert list(ours) == list(expected)
    assert all(ours[k].shape == v.shape for k, v in expected.items())
    assert len(ours) == 702


@pytest.mark.parametrize("scale, size", [(4, (12, 16)), (2, (14, 18)), (2, (15, 21))])
def test_rrdb_file_with_original_keys_loads_and_upscales(tmp_path, scale, size):
    torch.manual_seed(0)
    path = tmp_path / f"RealESRGAN_x{scale}plus-like.pth"
    torch.save({"params_ema": original_rrdb_state(scale, num_feat=16, num_block=2, grow=8)}, path)
    model, info = load_sr(path, architecture="superres-rrdb")
    assert (info.scale, info.config["num_block"], info.config["num_grow_ch"]) == (scale, 2, 8)
    y = upscale(torch.rand(1, 3, *size), model)  # odd sizes are padded to whole unshuffle cells
    assert y.shape == (1, 3, size[0] * scale, size[1] * scale)


def test_esrgan_repository_names_are_understood(tmp_path):
    state = original_rrdb_state(4, num_feat=8, num_block=1, grow=4)
    renames = [("body.", "RRDB_trunk."), ("conv_body", "trunk_conv"), ("conv_up", "upconv"), ("conv_hr", "HRconv")]
    old = {}
    for key, value in state.items():
        for new, legacy in renames:
            key = key.replace(new, legacy, 1) if key.startswith(new) else key
        old[key.replace(".rdb", ".RDB")] = value
    assert "RRDB_trunk.0.RDB1.conv1.weight" in old and "upconv1.weight" in old
    torch.save(old, tmp_path / "RRDB_ESRGAN_x4.pth")
    model, info = load_sr(tmp_path / "RRDB_ESRGAN_x4.pth")
    assert info.architecture == "superres-rrdb"
    torch.testing.assert_close(model.body[0].rdb1.conv1.weight, state["body.0.rdb1.conv1.weight"])


# -- the filter: tiles, clamping, module == function -----------------------------------------------

@pytest.fixture(scope="module")
def compact():
    if not COMPACT_X4.is_file():
        pytest.skip(f"third-party weight fixtures not found at {FIXTURES}")
    return load_sr(COMPACT_X4)[0]


def test_tiles_join_without_seams(compact):
    x = torch.rand(1, 3, 40, 52, generator=torch.Generator().manual_seed(0))
    whole = upscale(x, compact)
    tiled = upscale(x, compact, tile=16, overlap=compact.receptive_radius)  # 3 x 4 tiles, ragged edges
    assert max_error(tiled, whole) < 1e-5
    # and the overlap matters: tiles that do not see their neighbours leave seams
    assert max_error(upscale(x, compact, tile=16, overlap=2), whole) > 1e-3


def test_output_is_the_clamped_network_output(compact):
    x = reference("realesr-animevideov3.input.npy")
    with torch.no_grad():
        raw = compact(x)
    y = upscale(x, compact)
    assert raw.min() < 0 or raw.max() > 1, "the reference output should overshoot somewhere"
    torch.testing.assert_close(y, raw.clamp(0, 1), atol=0, rtol=0)


@needs_fixtures
def test_module_and_function_agree():
    x = reference("realesr-animevideov3.input.npy")[..., :24, :40]
    sr = SuperRes(COMPACT_X4, tile=16, overlap=8)
    assert sr.config["architecture"] == "superres-compact" and sr.scale == 4
    torch.testing.assert_close(sr(x), upscale(x, sr.net, tile=16, overlap=8), atol=0, rtol=0)
    assert isinstance(filters.create("superres", path=COMPACT_X4), SuperRes)


def test_image_shape_is_checked(compact):
    with pytest.raises(AssertionError, match=r"\[B, 3, H, W\]"):
        upscale(torch.rand(3, 8, 8), compact)
