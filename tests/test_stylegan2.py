"""StyleGAN2: images agree with NVlabs' own code, and NVlabs pickles are read without running anything.

tests/data/stylegan2/ holds small networks made by NVlabs stylegan2-ada-pytorch (weights keyed by NVlabs'
names, constructor kwargs in the metadata) and NVlabs' outputs for fixed z, c; the NVlabs code itself is
not needed here. Pickles in NVlabs' layout are written by `nvlabs_layout` below, with stand-ins for the two
globals such files name, so the reader is tested on the real opcodes without NVlabs' code.
"""

# A model loaded from a file equals the one in memory to 1e-5, not bit for bit: its tensors may sit in
# another memory layout, for which oneDNN may pick another convolution kernel (seen once in CI, ~1e-6).

import builtins
import json
import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from engine.generators import checkpoint, stylegan2
from engine.generators.checkpoint import CheckpointError
from engine.generators.nvlabs_pickle import NVlabsPickleError, UnsafePickleError, load_nvlabs_pickle

DATA = Path(__file__).parent / "data" / "stylegan2"
MODELS = ["uncond_skip32", "cond3_resnet16", "uncond_orig8"]
TOLERANCE = 1e-3


def reference(name: str):
    """The NVlabs-made network rebuilt here, and NVlabs' inputs and outputs for it."""
    with safe_open(str(DATA / f"{name}.safetensors"), framework="pt") as f:
        meta, weights = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    g = stylegan2.Generator(**json.loads(meta["masquerade.config"]))
    g.load_state_dict(weights, strict=True)
    arrays = {part: torch.from_numpy(np.load(DATA / f"{name}_{part}.npy")) for part in ("z", "c", "img", "img_cut")}
    return g.eval().requires_grad_(False), arrays, json.loads(meta["masquerade.provenance"])


def labels(g, arrays):
    return arrays["c"] if g.c_dim else None


# ---------------------------------------------------------------- (a) fidelity to NVlabs


@pytest.mark.parametrize("name", MODELS)
def test_images_match_nvlabs_outputs(name):
    g, ref, provenance = reference(name)
    assert provenance["reference"]["img"]["truncation_psi"] == 0.7
    z, c = ref["z"], labels(g, ref)
    with torch.no_grad():
        raw = g.synthesis(g.mapping(z, c, truncation_psi=0.7), noise_mode="const")
        raw_cut = g.synthesis(g.mapping(z, c, truncation_psi=0.5, truncation_cutoff=2), noise_mode="const")
        image = g(z, c, truncation_psi=0.7, noise_mode="const")
    assert raw.shape == ref["img"].shape == (4, 3, g.resolution, g.resolution)
    assert (raw - ref["img"]).abs().max() < TOLERANCE
    assert (raw_cut - ref["img_cut"]).abs().max() < TOLERANCE
    assert (image - ((ref["img"] + 1) / 2).clamp(0, 1)).abs().max() < TOLERANCE
    # the references are not trivial: different z give clearly different images
    assert (ref["img"][0] - ref["img"][1]).abs().max() > 100 * TOLERANCE


def test_parameter_names_mirror_nvlabs():
    g, _, _ = reference("uncond_skip32")
    keys = set(g.state_dict())
    for key in ("mapping.fc0.weight", "mapping.fc1.bias", "mapping.w_avg", "synthesis.b4.const",
                "synthesis.b4.resample_filter", "synthesis.b4.conv1.noise_const", "synthesis.b8.conv0.affine.weight",
                "synthesis.b8.conv0.noise_strength", "synthesis.b32.torgb.weight"):
        assert key in keys
    assert g.state_dict()["synthesis.b4.resample_filter"].shape == (4, 4)
    resnet, _, _ = reference("cond3_resnet16")
    assert "mapping.embed.weight" in resnet.state_dict() and "synthesis.b8.skip.weight" in resnet.state_dict()
    assert "synthesis.b8.torgb.weight" not in resnet.state_dict()  # 'resnet' draws RGB at the end only


def test_committed_weights_are_a_project_model_file():
    g, card = checkpoint.load(DATA / "cond3_resnet16.safetensors")
    assert card.architecture == "stylegan2" and card.config["c_dim"] == 3
    assert isinstance(g, stylegan2.Generator) and g.config == card.config


def test_config_round_trips_through_json():
    g, ref, _ = reference("cond3_resnet16")
    again = stylegan2.Generator(**json.loads(json.dumps(g.config)))
    again.load_state_dict(g.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(again(ref["z"], ref["c"]), g(ref["z"], ref["c"]), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- (e) truncation, noise, conditioning


def test_psi_zero_gives_the_w_avg_image_for_any_z():
    g, _, _ = reference("uncond_skip32")
    z = torch.randn(5, g.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        images = g(z, truncation_psi=0)
        average = g.render(g.mapping.w_avg.expand(1, g.num_ws, -1))
        free = g(z)
    torch.testing.assert_close(images, average.expand_as(images), atol=1e-6, rtol=0)
    assert (free[0] - free[1]).abs().max() > 0.01  # without truncation z matters


def test_truncation_cutoff_leaves_later_ws_alone():
    g, _, _ = reference("uncond_skip32")
    z = torch.randn(2, g.z_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        free, cut = g.mapping(z), g.mapping(z, truncation_psi=0, truncation_cutoff=3)
    torch.testing.assert_close(cut[:, :3], g.mapping.w_avg.expand(2, 3, -1))
    torch.testing.assert_close(cut[:, 3:], free[:, 3:], atol=0, rtol=0)


def test_noise_modes():
    g, ref, _ = reference("uncond_skip32")
    z = ref["z"][:1]
    with torch.no_grad():
        const_a, const_b = g(z, noise_mode="const"), g(z, noise_mode="const")
        none = g(z, noise_mode="none")
        rand_a, rand_b = g(z, noise_mode="random"), g(z, noise_mode="random")
    torch.testing.assert_close(const_a, const_b, atol=0, rtol=0)
    assert (const_a - none).abs().max() > 1e-4 and (rand_a - rand_b).abs().max() > 1e-4
    with pytest.raises(ValueError, match="noise_mode"):
        g(z, noise_mode="loud")


def test_conditional_model_needs_c():
    g, ref, _ = reference("cond3_resnet16")
    z = ref["z"]
    with pytest.raises(ValueError, match=r"conditional model.*\[B, 3\]"):
        g(z)
    with torch.no_grad():
        a = g(z[:1], torch.tensor([[1.0, 0, 0]]))
        b = g(z[:1], torch.tensor([[0.0, 0, 1]]))
    assert a.shape == (1, 3, 16, 16) and (a - b).abs().max() > 1e-3  # the label steers the image


def test_style_mixing_and_output_range():
    g, ref, _ = reference("uncond_skip32")
    with torch.no_grad():
        ws = g.mapping(ref["z"][:2], truncation_psi=0.7)  # [2, num_ws, w_dim]
        mixed = torch.cat([ws[:1, :4], ws[1:, 4:]], dim=1)
        images = g.render(torch.cat([ws, mixed]))
    assert ws.shape == (2, g.num_ws, g.w_dim) and images.shape == (3, 3, 32, 32)
    assert 0 <= images.min() and images.max() <= 1
    assert (images[2] - images[0]).abs().max() > 1e-3 and (images[2] - images[1]).abs().max() > 1e-3


@pytest.mark.parametrize("resolution", [2, 12, 2048])
def test_bad_resolution_is_refused(resolution):
    with pytest.raises(ValueError, match="power of two"):
        stylegan2.Generator(z_dim=8, w_dim=8, img_resolution=resolution)


def test_any_power_of_two_builds_with_its_channel_plan():
    g = stylegan2.Generator(z_dim=8, w_dim=8, img_resolution=4, synthesis_kwargs=dict(channel_base=64, channel_max=8))
    assert g(torch.randn(2, 8)).shape == (2, 3, 4, 4) and g.num_ws == 2
    g = stylegan2.Generator(z_dim=8, w_dim=8, img_resolution=64, mapping_kwargs=dict(num_layers=1),
                            synthesis_kwargs=dict(channel_base=128, channel_max=4))
    assert g.num_ws == 10 and g.synthesis.b64.conv1.weight.shape == (2, 2, 3, 3)


# ---------------------------------------------------------------- (b) pickles in NVlabs' layout

HOOK_MODULE, HOOK_NAME = "torch_utils.persistence", "_reconstruct_persistent_obj"


class _Persistent:
    """Pickles as NVlabs' persistence does: a call to the hook with a meta dict holding source and state."""

    def __init__(self, meta: dict):
        self.meta = meta

    def __reduce__(self):
        return getattr(sys.modules[HOOK_MODULE], HOOK_NAME), (self.meta,)


def nvlabs_layout(module: torch.nn.Module, module_src: str, init_kwargs: dict | None = None) -> _Persistent:
    """One of our modules as NVlabs' persistence records it (class names are the same as NVlabs')."""
    state = {"training": False, "_parameters": OrderedDict(module._parameters),
             "_buffers": OrderedDict(module._buffers), "_non_persistent_buffers_set": set(),
             "_forward_hooks": OrderedDict(), "_backward_hooks": OrderedDict(),
             "_modules": OrderedDict((k, nvlabs_layout(m, module_src)) for k, m in module._modules.items()),
             "_init_args": (), "_init_kwargs": init_kwargs or {}}
    if hasattr(module, "weight_gain"):
        state["weight_gain"] = np.float64(module.weight_gain)  # NVlabs keeps numpy scalars: exercise them
    meta = dict(type="class", version=6, module_src=module_src, class_name=type(module).__name__, state=state)
    return _Persistent(meta)


@pytest.fixture
def nvlabs_names(monkeypatch):
    """Importable stand-ins for the globals NVlabs pickles name, present only while writing a pickle."""

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("the reader must never call NVlabs' hook")

    class EasyDict(dict):
        pass

    persistence = types.ModuleType(HOOK_MODULE)
    _reconstruct_persistent_obj.__module__, _reconstruct_persistent_obj.__qualname__ = HOOK_MODULE, HOOK_NAME
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    util.EasyDict = EasyDict
    modules = {"torch_utils": types.ModuleType("torch_utils"), HOOK_MODULE: persistence,
               "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}

    def write(path: Path, data: dict, protocol: int = pickle.DEFAULT_PROTOCOL):
        with monkeypatch.context() as m:
            for name, mod in modules.items():
                m.setitem(sys.modules, name, mod)
            path.write_bytes(pickle.dumps(data(EasyDict) if callable(data) else data, protocol=protocol))
        return path

    return write


def write_snapshot(write, path: Path, g: stylegan2.Generator, module_src: str,
                   protocol: int = pickle.DEFAULT_PROTOCOL) -> Path:
    def data(easy_dict):
        kwargs = dict(g.config, mapping_kwargs=easy_dict(g.config["mapping_kwargs"]),
                      synthesis_kwargs=easy_dict(g.config["synthesis_kwargs"]))
        record = nvlabs_layout(g, module_src, kwargs)
        return {"G": record, "D": None, "G_ema": record, "augment_pipe": None,
                "training_set_kwargs": {"path": "faces.zip", "resolution": g.resolution, "use_labels": g.c_dim > 0}}

    return write(path, data, protocol)


def marker_source(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('module_src ran')\n"


@pytest.mark.parametrize("name", ["uncond_skip32", "cond3_resnet16"])
def test_nvlabs_layout_pickle_loads_and_generates(tmp_path, nvlabs_names, name):
    g, ref, _ = reference(name)
    marker = tmp_path / "module_src_ran"
    path = write_snapshot(nvlabs_names, tmp_path / "network-snapshot-000000.pkl", g, marker_source(marker))
    loaded, card = load_nvlabs_pickle(path)
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
    assert not marker.exists(), "the pickled module source was executed"
    assert card.architecture == "stylegan2" and card.config == g.config
    assert card.provenance["entries"] == ["D", "G", "G_ema", "augment_pipe", "training_set_kwargs"]
    assert card.provenance["training_set_kwargs"]["path"] == "faces.zip"
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    z, c = ref["z"], labels(g, ref)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z, c, truncation_psi=0.7), g(z, c, truncation_psi=0.7), atol=1e-5, rtol=0)
        assert (loaded.synthesis(loaded.mapping(z, c, 0.7)) - ref["img"]).abs().max() < TOLERANCE
    assert isinstance(load_nvlabs_pickle(path, which="G")[0], stylegan2.Generator)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_reads(tmp_path, nvlabs_names, protocol):
    # protocols 0-2 name Python 2 modules (__builtin__, copy_reg) and write bytes as latin-1 text
    g, ref, _ = reference("uncond_orig8")
    path = write_snapshot(nvlabs_names, tmp_path / f"p{protocol}.pkl", g, "", protocol)
    loaded, _ = load_nvlabs_pickle(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ref["z"]), g(ref["z"]), atol=1e-5, rtol=0)


def test_missing_entry_and_wrong_class_are_named(tmp_path, nvlabs_names):
    g, _, _ = reference("uncond_orig8")
    path = write_snapshot(nvlabs_names, tmp_path / "snap.pkl", g, "")
    with pytest.raises(NVlabsPickleError, match=r"snap.pkl: no 'G_smooth'.*G_ema"):
        load_nvlabs_pickle(path, which="G_smooth")
    with pytest.raises(NVlabsPickleError, match=r"snap.pkl: 'D' is NoneType"):
        load_nvlabs_pickle(path, which="D")
    mapping_only = nvlabs_names(tmp_path / "mapping.pkl", {"G_ema": nvlabs_layout(g.mapping, "")})
    with pytest.raises(NVlabsPickleError, match="MappingNetwork, not a Generator"):
        load_nvlabs_pickle(mapping_only)


def test_weights_that_do_not_fit_are_named(tmp_path, nvlabs_names):
    g, _, _ = reference("uncond_orig8")
    wrong = dict(g.config, w_dim=8)  # the recorded kwargs disagree with the tensors
    path = nvlabs_names(tmp_path / "odd.pkl", {"G_ema": nvlabs_layout(g, "", wrong)})
    with pytest.raises(NVlabsPickleError, match="odd.pkl: 'G_ema''s weights do not fit StyleGAN2"):
        load_nvlabs_pickle(path)


# ---------------------------------------------------------------- (c) malicious pickles


class _Payload:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def payloads(marker: Path):
    return {
        "os.system": (_Payload(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
        "builtins.exec": (_Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"), "builtins.exec"),
        "builtins.eval": (_Payload(builtins.eval, f"open({str(marker)!r}, 'w').close()"), "builtins.eval"),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "builtins.eval"])
def test_code_running_pickle_is_refused_and_nothing_runs(tmp_path, nvlabs_names, kind):
    # control: the payload is live, plain pickle runs it
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(payloads(control)[kind][0]))
    assert control.exists()

    marker = tmp_path / "pwned"
    payload, global_name = payloads(marker)[kind]
    top = tmp_path / "top.pkl"
    top.write_bytes(pickle.dumps({"G_ema": payload}))
    g, _, _ = reference("uncond_orig8")
    hidden = nvlabs_layout(g, "")
    hidden.meta["state"]["_modules"]["mapping"].meta["state"]["activation"] = payload  # deep inside a network
    nested = nvlabs_names(tmp_path / "nested.pkl", {"G_ema": hidden})
    for path in (top, nested):
        with pytest.raises(UnsafePickleError, match=rf"{path.name}: refused global {global_name}"):
            load_nvlabs_pickle(path)
        assert not marker.exists(), f"{kind} ran while reading {path.name}"


def test_persistent_ids_are_refused(tmp_path):
    class WithPersistentId(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage-0" if isinstance(obj, str) and obj == "x" else None

    path = tmp_path / "pid.pkl"
    with open(path, "wb") as f:
        WithPersistentId(f).dump({"G_ema": "x"})
    with pytest.raises(UnsafePickleError, match="pid.pkl: refused persistent id"):
        load_nvlabs_pickle(path)


# ---------------------------------------------------------------- (d) damaged files


def test_truncated_pickle_is_named(tmp_path, nvlabs_names):
    g, _, _ = reference("uncond_orig8")
    whole = write_snapshot(nvlabs_names, tmp_path / "whole.pkl", g, "").read_bytes()
    for cut in (len(whole) // 2, len(whole) - 3, 40):
        bad = tmp_path / f"cut{cut}.pkl"
        bad.write_bytes(whole[:cut])
        with pytest.raises(NVlabsPickleError, match=rf"cut{cut}.pkl: not a readable NVlabs pickle") as info:
            load_nvlabs_pickle(bad)
        assert isinstance(info.value, ValueError) and isinstance(info.value, CheckpointError)


def test_garbage_and_missing_files_are_named(tmp_path):
    bad = tmp_path / "noise.pkl"
    bad.write_bytes(b"\x00\xff" * 500)
    with pytest.raises(NVlabsPickleError, match="noise.pkl: not a readable NVlabs pickle"):
        load_nvlabs_pickle(bad)
    listed = tmp_path / "list.pkl"
    listed.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(NVlabsPickleError, match="list.pkl: expected a dict of networks"):
        load_nvlabs_pickle(listed)
    with pytest.raises(NVlabsPickleError, match="absent.pkl: no such file"):
        load_nvlabs_pickle(tmp_path / "absent.pkl")
