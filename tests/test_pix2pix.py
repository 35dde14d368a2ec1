"""pix2pix U-Net filter: the network computes what junyanz' UnetGenerator computed (tests/data/pix2pix/README.md
says how the references were made), its shape is read from the keys, files that are not one are named, and
the filter works on any frame size with the shared blend and stabilise controls."""

from pathlib import Path

import numpy as np
import pytest
import torch

from engine import filters
from engine.filters.cyclegan import CycleGAN, ResnetGenerator
from engine.filters.img2img import WeightsError
from engine.filters.pix2pix import Pix2Pix, UnetGenerator, load_pix2pix, translate, working_size

DATA = Path(__file__).resolve().parent / "data" / "pix2pix"
CASES = {  # reference name: (constructor arguments, weight seed, input size and seed, statistics)
    "unet256_ngf8_batch": (dict(num_downs=8, ngf=8, norm="batch"), 21, (256, 3), "running"),
    "unet256_ngf8_batch_frame": (dict(num_downs=8, ngf=8, norm="batch"), 21, (256, 3), "frame"),
    "unet128_ngf4_instance": (dict(num_downs=7, ngf=4, norm="instance"), 22, (128, 4), "running"),
}


def seeded_weights(shapes: dict[str, torch.Size], seed: int) -> dict[str, torch.Tensor]:
    """Weights from numpy's frozen legacy generator, key by key in sorted order (batch counts 0, drawing
    nothing); the references were made by loading the same numbers into the original UnetGenerator."""
    rng = np.random.RandomState(seed)
    out = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(0)
            continue
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


def test_input(size: int, seed: int) -> torch.Tensor:
    """[1, 3, size, size] in [-1, 1]: 16x16 uniform blocks with grain, numpy only."""
    rng = np.random.RandomState(seed)
    low = rng.uniform(-1, 1, (1, 3, 16, 16))
    x = np.repeat(np.repeat(low, size // 16, axis=2), size // 16, axis=3)
    return torch.from_numpy(np.clip(x + 0.2 * rng.standard_normal((1, 3, size, size)), -1, 1).astype(np.float32))


test_input.__test__ = False  # a helper, not a test


def state_dict_file(folder: Path, config: dict, seed: int, name: str = "latest_net_G.pth") -> Path:
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in UnetGenerator(**config).state_dict().items()}
    torch.save(seeded_weights(shapes, seed), folder / name)  # a plain state dict, as the repository saves
    return folder / name


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"{list(a.shape)} != {list(b.shape)}"
    return (a - b).abs().max().item()


# -- fidelity to the original ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CASES))
def test_unet_generator_matches_junyanz(tmp_path, name):
    config, seed, (size, input_seed), statistics = CASES[name]
    net = load_pix2pix(state_dict_file(tmp_path, config, seed), statistics)
    assert net.config == dict(in_channels=3, out_channels=3, **config)  # depth, width and norm from the keys
    x = test_input(size, input_seed)
    with torch.no_grad():
        y = net(x)
    expected = torch.from_numpy(np.load(DATA / f"{name}_output.npy"))
    step = size // expected.shape[-1]  # unet_256's references keep every 4th pixel (README.md)
    assert max_error(y[..., ::step, ::step], expected) < 1e-5
    assert expected.std() > 0.2 and (expected.abs() > 0.99).float().mean() < 0.01  # not saturated
    # the filter's own scaling: [0, 1] in and out, no resampling at the native size
    if step == 1:
        assert max_error(translate((x + 1) / 2, net), ((expected + 1) / 2).clamp(0, 1)) < 1e-5


def test_frame_statistics_differ_from_running_ones_and_need_batch_norm():
    running = torch.from_numpy(np.load(DATA / "unet256_ngf8_batch_output.npy"))
    frame = torch.from_numpy(np.load(DATA / "unet256_ngf8_batch_frame_output.npy"))
    assert max_error(running, frame) > 0.1
    with pytest.raises(ValueError, match='statistics must be "running"'):
        load_pix2pix(DATA / "absent.pth", statistics="batch")


def test_old_files_and_foreign_wrappers_load(tmp_path):
    """Files from PyTorch < 0.4.1 lack the batch count; DataParallel saves add `module.`; old instance
    norms saved running statistics the modern layer does not have: all load as the repository loads them."""
    config, seed, (size, input_seed), _ = CASES["unet128_ngf4_instance"]
    state = torch.load(state_dict_file(tmp_path, config, seed), weights_only=True)
    state |= {"model.model.1.model.2.running_mean": torch.zeros(8), "model.model.1.model.2.running_var": torch.ones(8)}
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "old_instance.pth")
    with torch.no_grad():
        y = load_pix2pix(tmp_path / "old_instance.pth")(test_input(size, input_seed))
    assert max_error(y, torch.from_numpy(np.load(DATA / "unet128_ngf4_instance_output.npy"))) < 1e-5

    config = dict(num_downs=5, ngf=2, norm="batch")
    state = torch.load(state_dict_file(tmp_path, config, 3), weights_only=True)
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "no_counts.pth")
    net = load_pix2pix(tmp_path / "no_counts.pth")
    assert net.config == dict(in_channels=3, out_channels=3, **config)


# -- recognising files -------------------------------------------------------------------------------

@pytest.mark.parametrize("num_downs, ngf, norm, channels", [(5, 1, "batch", (1, 3)), (6, 3, "instance", (3, 1)),
                                                           (8, 2, "batch", (3, 3))])
def test_depth_width_norm_and_channels_are_read_from_the_keys(num_downs, ngf, norm, channels):
    net = UnetGenerator(*channels, num_downs=num_downs, ngf=ngf, norm=norm)
    assert UnetGenerator.config_from_state_dict(net.state_dict()) == net.config


def test_keys_are_the_originals_nested_ones():
    keys = set(UnetGenerator(num_downs=8, ngf=2, norm="batch").state_dict())
    assert {"model.model.0.weight", "model.model.3.weight", "model.model.3.bias", "model.model.1.model.1.weight",
            "model.model.1.model.2.running_var", "model.model.1.model.3.model.3.model.5.weight"} <= keys
    innermost = "model.model.1" + ".model.3" * 6 + ".model"  # the 8th level, 1x1 at 256 px
    assert {f"{innermost}.1.weight", f"{innermost}.3.weight", f"{innermost}.4.weight"} <= keys
    assert "model.model.0.bias" not in keys  # a batch norm follows: no bias, as in the original


def test_unknown_extra_and_missing_keys_are_refused_in_one_line_naming_the_file(tmp_path):
    state = UnetGenerator(num_downs=5, ngf=2, norm="instance").state_dict()
    torch.save(state | {"model.model.9.weight": torch.zeros(2)}, tmp_path / "extra.pth")
    torch.save({k: v for k, v in state.items() if not k.endswith("model.5.weight")}, tmp_path / "short.pth")
    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    for name in ("extra.pth", "short.pth", "other.pth"):
        with pytest.raises(WeightsError) as e:
            Pix2Pix(tmp_path / name)
        message = str(e.value)
        assert "\n" not in message and message.startswith(str(tmp_path / name))
        assert 'not a pix2pix UnetGenerator (kind = "pix2pix") as asked' in message


def test_a_resnet_file_and_a_unet_file_name_each_other(tmp_path):
    torch.save(ResnetGenerator(ngf=2, blocks=2).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match=r"resnet\.pth: holds a CycleGAN/pix2pix ResnetGenerator \(2 blocks"):
        Pix2Pix(tmp_path / "resnet.pth")
    torch.save(UnetGenerator(num_downs=8, ngf=2).state_dict(), tmp_path / "unet.pth")
    with pytest.raises(WeightsError, match=r'unet\.pth: holds a pix2pix UnetGenerator \(unet_256, ngf 2, batch norm; '
                                           r'kind = "pix2pix"\), not a CycleGAN'):
        CycleGAN(tmp_path / "unet.pth")


def test_numbers_that_are_not_finite_and_colourisation_models_are_refused(tmp_path):
    state = UnetGenerator(num_downs=5, ngf=2).state_dict()
    state["model.model.1.model.2.running_var"][0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(WeightsError, match=r"nan\.pth: model\.model\.1\.model\.2\.running_var holds a number that "
                                           r"is not finite"):
        Pix2Pix(tmp_path / "nan.pth")
    torch.save(UnetGenerator(1, 2, num_downs=5, ngf=2).state_dict(), tmp_path / "colorization.pth")  # L -> ab
    with pytest.raises(WeightsError, match="for grey or RGB images"):
        Pix2Pix(tmp_path / "colorization.pth")


def test_code_in_a_checkpoint_is_not_run(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"model.model.0.weight": Boom()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match=r"evil\.pth"):
        Pix2Pix(tmp_path / "evil.pth")


# -- the filter --------------------------------------------------------------------------------------

def test_working_size_rounds_to_whole_cells():
    assert working_size(64, 64, 256) == (256, 256)
    assert working_size(1080, 1920, 256) == (1024, 2048)
    assert working_size(384, 100, 128) == (384, 128)
    assert working_size(256, 256, 256) == (256, 256)


def test_filter_follows_the_contract_on_any_frame_size(tmp_path):
    path = state_dict_file(tmp_path, dict(num_downs=6, ngf=2, norm="batch"), 5)
    assert filters.get("pix2pix") is Pix2Pix and Pix2Pix.scale == 1
    assert Pix2Pix.controls == {"blend": (1.0, 0.0, 1.0), "stabilise": (0.0, 0.0, 0.95)}
    f = filters.create("pix2pix", path=path, blend=0.25, stabilise=0.5, statistics="frame")
    assert (f.blend, f.stabilise, f.config["statistics"]) == (0.25, 0.5, "frame")
    for size in [(64, 64), (13, 22), (3, 5), (100, 70)]:
        x = torch.rand(2, 3, *size)
        y = f(x, blend=1.0, stabilise=0.0)
        assert y.shape == x.shape and y.dtype == torch.float32 and 0 <= y.min() and y.max() <= 1
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    made = translate(x, f.net)
    assert (made - x).abs().mean() > 0.05
    torch.testing.assert_close(f(x, blend=0.0, stabilise=0.0), x, atol=0, rtol=0)
    torch.testing.assert_close(f(x, blend=0.5, stabilise=0.0), (x + made) / 2, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="statistics"):
        Pix2Pix(path, statistics="batch")


def test_a_show_builds_the_filter(tmp_path):
    from engine import show as shows
    from engine.frame import Tick
    from engine.pipeline import Pipeline

    from .conftest import DEFAULT_MODEL

    state_dict_file(tmp_path, dict(num_downs=6, ngf=2, norm="instance"), 6, "facades.pth")
    (tmp_path / "show.toml").write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[[filters]]\nkind = "pix2pix"\n'
                                        'path = "facades.pth"\nblend = 0.5\n')
    p = Pipeline(shows.load(tmp_path / "show.toml"), "cpu")
    frame = p.generate(Tick(0, 0.0)).image
    assert frame.shape[:2] == (1, 3) and p.show.filters[0].controls()["blend"] == (0.5, 0.0, 1.0)
