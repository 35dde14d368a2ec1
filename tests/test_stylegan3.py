"""StyleGAN3 (configs T and R): images agree with NVlabs' own code, NVlabs-layout pickles load and play, and
the input transform moves the picture.

tests/data/stylegan3/ holds two small networks made by NVlabs stylegan3 (`t_uncond32`: config T with NVlabs'
default schedule knobs; `r_cond3_32`: config R, conditional, with a non-default schedule and a clamp that
bites), their weights keyed by NVlabs' names with the constructor kwargs in the metadata, and NVlabs'
outputs for fixed z, c: `img` (psi 0.7), `img_cut` (psi 0.5, cutoff 2) and `img_tf` (psi 0.7 with the input
transform that NVlabs' gen_images.py sets for --translate=0.1,-0.05 --rotate=20). NVlabs' code is not needed.
"""

# A model loaded from a file equals the one in memory to 1e-5, not bit for bit: its tensors may sit in
# another memory layout, for which oneDNN may pick another convolution kernel (seen once in CI, ~1e-6).

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from engine import generators
from engine.generators import checkpoint, stylegan2, stylegan3
from engine.generators.nvlabs_pickle import NVlabsPickleError, UnsafePickleError, load_nvlabs_pickle
from tests import test_stylegan2 as sg2_tests

DATA = Path(__file__).parent / "data" / "stylegan3"
MODELS = ["t_uncond32", "r_cond3_32"]
TOLERANCE = 1e-3
nvlabs_names = sg2_tests.nvlabs_names  # the fixture that writes pickles in NVlabs' layout


def reference(name: str):
    """The NVlabs-made network rebuilt here, and NVlabs' inputs and outputs for it."""
    with safe_open(str(DATA / f"{name}.safetensors"), framework="pt") as f:
        meta, weights = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    g = stylegan3.Generator(**json.loads(meta["masquerade.config"]))
    g.load_state_dict(weights, strict=True)
    parts = ("z", "c", "img", "img_cut", "img_tf")
    arrays = {part: torch.from_numpy(np.load(DATA / f"{name}_{part}.npy")) for part in parts}
    return g.eval().requires_grad_(False), arrays, json.loads(meta["masquerade.provenance"]), weights


def labels(g, arrays):
    return arrays["c"] if g.c_dim else None


# ---------------------------------------------------------------- fidelity to NVlabs


@pytest.mark.parametrize("name", MODELS)
def test_images_match_nvlabs_outputs(name):
    g, ref, provenance, _ = reference(name)
    settings = provenance["reference"]
    assert settings["img"]["truncation_psi"] == 0.7 and settings["img_tf"]["rotate"] == 20
    z, c = ref["z"], labels(g, ref)
    turned = stylegan3.transform_matrix(settings["img_tf"]["translate"], settings["img_tf"]["rotate"])
    with torch.no_grad():
        raw = g.synthesis(g.mapping(z, c, truncation_psi=0.7), noise_mode="const")
        raw_cut = g.synthesis(g.mapping(z, c, truncation_psi=0.5, truncation_cutoff=2))
        raw_tf = g.synthesis(g.mapping(z, c, truncation_psi=0.7), transform=turned)
        image = g(z, c, truncation_psi=0.7, noise_mode="const")
    assert raw.shape == ref["img"].shape == (4, 3, g.resolution, g.resolution)
    assert (raw - ref["img"]).abs().max() < TOLERANCE
    assert (raw_cut - ref["img_cut"]).abs().max() < TOLERANCE
    assert (raw_tf - ref["img_tf"]).abs().max() < TOLERANCE
    assert (image - ((ref["img"] + 1) / 2).clamp(0, 1)).abs().max() < TOLERANCE
    # the references are not trivial: z, truncation and the transform each change the image clearly
    assert (ref["img"][0] - ref["img"][1]).abs().max() > 50 * TOLERANCE
    assert (ref["img"] - ref["img_cut"]).abs().max() > 50 * TOLERANCE
    assert (ref["img"] - ref["img_tf"]).abs().max() > 50 * TOLERANCE


def test_the_buffer_and_the_argument_transform_alike():
    g, ref, _, _ = reference("t_uncond32")
    turned = stylegan3.transform_matrix((0.1, -0.05), 20)
    with torch.no_grad():
        g.synthesis.input.transform.copy_(turned)  # what NVlabs' gen_images.py does
        raw = g.synthesis(g.mapping(ref["z"], None, truncation_psi=0.7))
        per_image = g.synthesis(g.mapping(ref["z"], None, truncation_psi=0.7),
                                transform=torch.stack([turned, torch.eye(3), turned, torch.eye(3)]))
    g.synthesis.input.transform.copy_(torch.eye(3))
    assert (raw - ref["img_tf"]).abs().max() < TOLERANCE
    assert (per_image[0::2] - ref["img_tf"][0::2]).abs().max() < TOLERANCE  # [B, 3, 3]: one per image
    assert (per_image[1::2] - ref["img"][1::2]).abs().max() < TOLERANCE


@pytest.mark.parametrize("name", MODELS)
def test_schedule_and_filters_are_designed_as_nvlabs_designs_them(name):
    # a network built from the kwargs alone (no weights loaded) has NVlabs' layer names, shapes and filters
    g, _, _, weights = reference(name)
    fresh = stylegan3.Generator(**g.config).state_dict()
    assert {k: tuple(v.shape) for k, v in fresh.items()} == {k: tuple(v.shape) for k, v in weights.items()}
    filters = [k for k in weights if k.endswith(("up_filter", "down_filter"))]
    assert len(filters) >= 8
    for key in filters:
        torch.testing.assert_close(fresh[key], weights[key], atol=1e-7, rtol=0)


def test_parameter_names_mirror_nvlabs():
    t, _, _, _ = reference("t_uncond32")
    keys = set(t.state_dict())
    for key in ("mapping.fc0.weight", "mapping.w_avg", "synthesis.input.freqs", "synthesis.input.phases",
                "synthesis.input.transform", "synthesis.input.weight", "synthesis.input.affine.weight",
                "synthesis.L0_36_16.affine.weight", "synthesis.L0_36_16.magnitude_ema",
                "synthesis.L0_36_16.up_filter", "synthesis.L2_52_16.down_filter", "synthesis.L6_32_3.weight",
                "synthesis.L6_32_3.bias"):
        assert key in keys, key
    assert t.synthesis.layer_names == ["L0_36_16", "L1_36_16", "L2_52_16", "L3_52_13", "L4_52_8", "L5_32_8",
                                       "L6_32_3"]
    assert "synthesis.L6_32_3.up_filter" not in keys  # ToRGB neither resamples nor filters
    assert t.state_dict()["synthesis.L2_52_16.up_filter"].shape == (24,)  # 16 -> 64 samples: 6 taps x 4
    assert t.synthesis.L2_52_16.weight.shape[-1] == 3 and t.num_ws == 8
    r, _, _, _ = reference("r_cond3_32")
    radial = r.state_dict()["synthesis.L1_28_24.down_filter"]
    assert radial.shape == (8, 8) and torch.equal(radial, radial.t())  # config R: 2-D, radially symmetric
    assert r.state_dict()["synthesis.L4_32_16.down_filter"].ndim == 1  # critically sampled: separable
    assert r.synthesis.L1_28_24.weight.shape[-1] == 1 and "mapping.embed.weight" in r.state_dict()


def test_committed_weights_are_a_project_model_file():
    g, card = checkpoint.load(DATA / "r_cond3_32.safetensors")
    assert card.architecture == "stylegan3" and card.config["use_radial_filters"] is True
    assert isinstance(g, stylegan3.Generator) and g.config == card.config
    assert "stylegan3" in generators.names()


def test_config_round_trips_through_json_and_the_registry():
    g, ref, _, _ = reference("r_cond3_32")
    again = generators.create("stylegan3", **json.loads(json.dumps(g.config)))
    again.load_state_dict(g.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(ref["z"], ref["c"]), g(ref["z"], ref["c"]), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- the parts, as pure functions


def test_filter_design_numbers():
    # scipy.signal.firwin(6, 2.0, width=4.0, fs=16) and scipy.special.j1, computed with scipy 1.17
    expected = [0.07528989049311557, 0.1741009797629684, 0.250609129743916]
    taps = stylegan3.sinc_lowpass(6, 2.0, 4.0, 16)
    np.testing.assert_allclose(taps, expected + expected[::-1], atol=1e-12)
    np.testing.assert_allclose(stylegan3.bessel_j1(np.array([0.0, 1.0, 3.8317059702075125, 25.0])),
                               [0.0, 0.44005058574493355, 0.0, -0.12535024958028981], atol=1e-13)
    radial = stylegan3.jinc_lowpass(7, 2.0, 4.0, 16)  # odd: the centre tap sits at r = 0
    assert np.isfinite(radial).all() and abs(radial.sum() - 1) < 1e-12
    assert np.allclose(radial, radial.T) and np.allclose(radial, radial[::-1, ::-1])
    assert stylegan3.design_lowpass_filter(1, 2.0, 4.0, 16) is None
    with pytest.raises(ValueError, match="cutoff"):
        stylegan3.sinc_lowpass(6, 8.0, 4.0, 16)


def test_separable_and_2d_resampling_agree():
    x = torch.randn(2, 3, 9, 11, generator=torch.Generator().manual_seed(3))
    f = torch.as_tensor(stylegan3.sinc_lowpass(8, 3.0, 2.0, 16), dtype=torch.float32)
    separable = stylegan3.upfirdn2d(x, f, up=2, down=1, pad=(4, 3, 5, 2), gain=4)
    full = stylegan3.upfirdn2d(x, torch.outer(f, f), up=2, pad=(4, 3, 5, 2), gain=4)
    theirs = stylegan2.upfirdn2d(x, f, up=2, pad=(4, 3, 5, 2), gain=4)
    assert separable.shape == (2, 3, 18, 22)  # 9*2 + 5 + 2 - 8 + 1, 11*2 + 4 + 3 - 8 + 1
    torch.testing.assert_close(separable, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(separable, theirs, atol=1e-5, rtol=0)
    down = stylegan3.upfirdn2d(x, f, down=2, pad=(-1, 2, 0, 1))
    torch.testing.assert_close(down, stylegan2.upfirdn2d(x, f, down=2, pad=(-1, 2, 0, 1)), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- the input transform (a user-facing feature)


@pytest.mark.parametrize("dx, dy", [(2, 0), (0, -3), (-1, 2)])
def test_translating_the_input_shifts_the_image(dx, dy):
    g, ref, _, _ = reference("t_uncond32")
    r = g.resolution
    with torch.no_grad():
        ws = g.mapping(ref["z"][:2], None, truncation_psi=0.7)
        still = g.synthesis(ws)
        moved = g.synthesis(ws, transform=stylegan3.transform_matrix((dx / r, dy / r)))
    m = 5  # stay clear of the borders, where content enters from outside the frame
    inside = still[..., m:r - m, m:r - m]
    shifted = moved[..., m + dy:r - m + dy, m + dx:r - m + dx]  # +x right, +y down, in image widths
    assert (shifted - inside).abs().max() < TOLERANCE  # config T is translation equivariant
    assert (moved[..., m:r - m, m:r - m] - inside).abs().max() > 20 * TOLERANCE  # and the content did move


def test_rotating_the_input_turns_a_config_r_image():
    g, ref, _, _ = reference("r_cond3_32")
    with torch.no_grad():
        ws = g.mapping(ref["z"][:3], ref["c"][:3], truncation_psi=0.7)
        still = g.synthesis(ws)
        turned = g.synthesis(ws, transform=stylegan3.transform_matrix(rotate=90))
    # 1x1 convolutions and radially symmetric filters: a quarter turn is exact on the square pixel grid
    assert (turned - torch.rot90(still, 1, dims=(2, 3))).abs().max() < TOLERANCE  # counterclockwise on screen
    assert (turned - still).abs().max() > 20 * TOLERANCE


# ---------------------------------------------------------------- truncation, noise, API


@pytest.mark.parametrize("name", MODELS)
def test_psi_zero_gives_the_w_avg_image_for_any_z(name):
    g, ref, _, _ = reference(name)
    z = torch.randn(5, g.z_dim, generator=torch.Generator().manual_seed(1))
    c = torch.eye(3)[[0, 1, 2, 0, 1]] if g.c_dim else None  # psi = 0 forgets the label too
    with torch.no_grad():
        images = g(z, c, truncation_psi=0)
        average = g.render(g.mapping.w_avg.expand(1, g.num_ws, -1))
        free = g(z, c)
    torch.testing.assert_close(images, average.expand_as(images), atol=1e-6, rtol=0)
    assert (free[0] - free[1]).abs().max() > 0.01  # without truncation z matters


def test_noise_modes_and_output_range():
    g, ref, _, _ = reference("t_uncond32")
    with torch.no_grad():
        images = [g(ref["z"][:2], noise_mode=mode) for mode in ("const", "random", "none")]
    for other in images[1:]:  # StyleGAN3 has no noise inputs: every mode draws the same picture
        torch.testing.assert_close(other, images[0], atol=0, rtol=0)
    assert images[0].shape == (2, 3, 32, 32) and 0 <= images[0].min() and images[0].max() <= 1
    with pytest.raises(ValueError, match="noise_mode"):
        g(ref["z"], noise_mode="loud")
    with pytest.raises(AssertionError, match="ws must be"):
        g.render(torch.zeros(1, g.num_ws - 1, g.w_dim))


def test_conditional_model_needs_c():
    g, ref, _, _ = reference("r_cond3_32")
    with pytest.raises(ValueError, match=r"conditional model.*\[B, 3\]"):
        g(ref["z"])


def test_training_mode_tracks_magnitudes():
    g = stylegan3.Generator(z_dim=8, w_dim=8, img_resolution=16, channel_base=64, channel_max=8, num_layers=3)
    layer = g.synthesis.L0_36_8
    assert layer.magnitude_ema.item() == 1
    g.train()(torch.randn(2, 8))
    assert layer.magnitude_ema.item() != 1  # moved toward the input's mean square
    assert g.eval()(torch.randn(2, 8)).shape == (2, 3, 16, 16)


@pytest.mark.parametrize("resolution", [2, 24])
def test_bad_resolution_is_refused(resolution):
    with pytest.raises(ValueError, match="power of two"):
        stylegan3.Generator(z_dim=8, w_dim=8, img_resolution=resolution)


def test_schedule_needs_layers_before_the_critical_ones():
    with pytest.raises(ValueError, match="num_critical"):
        stylegan3.Generator(z_dim=8, w_dim=8, img_resolution=16, num_layers=2, num_critical=2)


# ---------------------------------------------------------------- pickles in NVlabs' layout


def write_snapshot(write, path: Path, g: stylegan3.Generator, module_src: str) -> Path:
    """A StyleGAN3 training snapshot as NVlabs writes it: synthesis kwargs flat among the Generator's."""

    def data(easy_dict):
        kwargs = dict(g.config, mapping_kwargs=easy_dict(g.config["mapping_kwargs"]))
        record = sg2_tests.nvlabs_layout(g, module_src, kwargs)
        return {"G": record, "D": None, "G_ema": record, "augment_pipe": None,
                "training_set_kwargs": {"path": "faces.zip", "resolution": g.resolution}}

    return write(path, data)


@pytest.mark.parametrize("name", MODELS)
def test_nvlabs_layout_pickle_loads_and_generates(tmp_path, nvlabs_names, name):
    g, ref, _, _ = reference(name)
    marker = tmp_path / "module_src_ran"
    path = write_snapshot(nvlabs_names, tmp_path / "network-snapshot-000000.pkl", g, sg2_tests.marker_source(marker))
    loaded, card = load_nvlabs_pickle(path)
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
    assert not marker.exists(), "the pickled module source was executed"
    assert isinstance(loaded, stylegan3.Generator)
    assert card.architecture == "stylegan3" and card.config == g.config
    assert card.provenance["source"] == "NVlabs StyleGAN3 pickle"
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    z, c = ref["z"], labels(g, ref)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z, c, truncation_psi=0.7), g(z, c, truncation_psi=0.7), atol=1e-5, rtol=0)
        assert (loaded.synthesis(loaded.mapping(z, c, 0.7)) - ref["img"]).abs().max() < TOLERANCE


def test_stylegan3_weights_that_do_not_fit_are_named(tmp_path, nvlabs_names):
    g, _, _, _ = reference("t_uncond32")
    wrong = dict(g.config, channel_max=8)  # the recorded kwargs disagree with the tensors
    path = nvlabs_names(tmp_path / "odd.pkl", {"G_ema": sg2_tests.nvlabs_layout(g, "", wrong)})
    with pytest.raises(NVlabsPickleError, match="odd.pkl: 'G_ema''s weights do not fit StyleGAN3"):
        load_nvlabs_pickle(path)
    unknown = dict(g.config, fancy_option=1)
    path = nvlabs_names(tmp_path / "new.pkl", {"G_ema": sg2_tests.nvlabs_layout(g, "", unknown)})
    with pytest.raises(NVlabsPickleError, match="new.pkl: cannot build a StyleGAN3 generator.*fancy_option"):
        load_nvlabs_pickle(path)


def test_code_hidden_in_a_stylegan3_record_is_refused(tmp_path, nvlabs_names):
    g, _, _, _ = reference("t_uncond32")
    marker = tmp_path / "pwned"
    payload, global_name = sg2_tests.payloads(marker)["builtins.exec"]
    record = sg2_tests.nvlabs_layout(g, "")
    record.meta["state"]["_modules"]["synthesis"].meta["state"]["_modules"]["input"].meta["state"]["size"] = payload
    path = nvlabs_names(tmp_path / "evil.pkl", {"G_ema": record})
    with pytest.raises(UnsafePickleError, match=rf"evil.pkl: refused global {global_name}"):
        load_nvlabs_pickle(path)
    assert not marker.exists()
