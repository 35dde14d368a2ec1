"""Writes TensorFlow-era StyleGAN pickles without TensorFlow, for the tests: the objects are
`dnnlib.tflib.network.Network`s pickled with the state their `__getstate__` gives (version, name,
static_kwargs, components, build_module_src, build_func_name, variables as (name, numpy array) pairs; ADA
adds input/output shapes and names), variables named and shaped as NVlabs' TF build functions make them
(`G_main` + `G_mapping` + `G_synthesis_stylegan2` in NVlabs/stylegan2, `G_synthesis` in NVlabs/stylegan2-ada).

Values are drawn from a seeded numpy generator, so a test rebuilds byte for byte the file whose reference
images were made by NVlabs' legacy.py (tests/data/tf_stylegan2/README.md). A stand-in `Network` class is
importable under NVlabs' name only while a file is written.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from pathlib import Path

import numpy as np

FLAVOURS = {  # flavour -> (Network state version, synthesis build function)
    "stylegan2": (4, "G_synthesis_stylegan2"),
    "ada": (5, "G_synthesis"),
}


class Network:
    """Pickles as TF's `dnnlib.tflib.network.Network` does: its class by name, then `__getstate__`'s dict."""

    def __init__(self, state: dict):
        self.state = state

    def __getstate__(self) -> dict:
        return self.state


@contextlib.contextmanager
def _nvlabs_names():
    names = {"dnnlib": types.ModuleType("dnnlib"), "dnnlib.tflib": types.ModuleType("dnnlib.tflib"),
             "dnnlib.tflib.network": types.ModuleType("dnnlib.tflib.network")}
    names["dnnlib.tflib.network"].Network = Network
    saved_module, saved_qualname = Network.__module__, Network.__qualname__
    before = {k: sys.modules.get(k) for k in names}
    try:
        Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
        sys.modules.update(names)
        yield
    finally:
        Network.__module__, Network.__qualname__ = saved_module, saved_qualname
        for key, module in before.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module


def _nf(kwargs: dict, stage: int) -> int:
    return int(np.clip(int(kwargs.get("fmap_base", 16384) / 2.0**stage), 1, kwargs.get("fmap_max", 512)))


class _Draw:
    """Seeded values with the scales a trained network has, so every tensor moves the image."""

    def __init__(self, seed: int):
        self.rng = np.random.RandomState(seed)

    def normal(self, shape, scale=1.0) -> np.ndarray:
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def scalar(self, scale) -> np.float32:  # TF's session.run gives numpy scalars for 0-d variables
        return np.float32(self.rng.standard_normal() * scale)


def mapping_variables(kw: dict, draw: _Draw) -> list[tuple[str, np.ndarray]]:
    z, c, w = kw.get("latent_size", 512), kw.get("label_size", 0), kw.get("dlatent_size", 512)
    layers, lrmul = kw.get("mapping_layers", 8), kw.get("mapping_lrmul", 0.01)
    out, features = [], z
    if c:
        embed = kw.get("label_fmaps") or z
        out += [("LabelEmbed/weight", draw.normal([c, embed])), ("LabelEmbed/bias", draw.normal([embed], 0.1))]
        features += embed
    for i in range(layers):
        fmaps = kw["mapping_fmaps"] if kw.get("mapping_fmaps") and i < layers - 1 else w
        out += [(f"Dense{i}/weight", draw.normal([features, fmaps], 1 / lrmul)),
                (f"Dense{i}/bias", draw.normal([fmaps], 0.1 / lrmul))]
        features = fmaps
    return out


def _modconv(scope: str, fin: int, fout: int, k: int, w: int, draw: _Draw, noise: bool = True) -> list:
    out = [(f"{scope}/weight", draw.normal([k, k, fin, fout])), (f"{scope}/mod_weight", draw.normal([w, fin])),
           (f"{scope}/mod_bias", draw.normal([fin], 0.1))]
    if noise:
        out.append((f"{scope}/noise_strength", draw.scalar(0.3)))
    return out + [(f"{scope}/bias", draw.normal([fout], 0.1))]


def synthesis_variables(kw: dict, draw: _Draw, const_scale: float = 1.0) -> list[tuple[str, np.ndarray]]:
    res_log2 = int(np.log2(kw.get("resolution", 1024)))
    w, channels, arch = kw.get("dlatent_size", 512), kw.get("num_channels", 3), kw.get("architecture", "skip")
    sizes = [2 ** ((i + 5) // 2) for i in range(res_log2 * 2 - 3)]  # one noise input per conv but the first's
    out = [(f"noise{i}", draw.normal([1, 1, r, r])) for i, r in enumerate(sizes)]
    out.append(("4x4/Const/const", draw.normal([1, _nf(kw, 1), 4, 4], const_scale)))
    out += _modconv("4x4/Conv", _nf(kw, 1), _nf(kw, 1), 3, w, draw)
    if arch == "skip":
        out += _modconv("4x4/ToRGB", _nf(kw, 1), channels, 1, w, draw, noise=False)
    for res in range(3, res_log2 + 1):
        at, fin, fout = f"{2**res}x{2**res}", _nf(kw, res - 2), _nf(kw, res - 1)
        out += _modconv(f"{at}/Conv0_up", fin, fout, 3, w, draw) + _modconv(f"{at}/Conv1", fout, fout, 3, w, draw)
        if arch == "resnet":
            out.append((f"{at}/Skip/weight", draw.normal([1, 1, fin, fout])))
        if arch == "skip" or res == res_log2:
            out += _modconv(f"{at}/ToRGB", fout, channels, 1, w, draw, noise=False)
    return out


def _state(version: int, name: str, func: str, kwargs: dict, variables: list, components: dict,
           module_src: str) -> dict:
    state = dict(version=version, name=name, static_kwargs=dict(kwargs), components=components,
                 build_module_src=module_src, build_func_name=func, variables=variables)
    if version >= 5:  # stylegan2-ada's network.py adds these
        state.update(input_shapes=[[None, 1]], output_shapes=[[None, 1]], input_names=["x"], output_names=["y"])
    return state


def stylegan2_networks(kwargs: dict, seed: int, flavour: str = "ada", module_src: str = "",
                       const_scale: float = 1.0) -> tuple[Network, Network, Network]:
    """(G, D, Gs) as a TF StyleGAN2 training run pickles them; G and Gs hold the same values here."""
    version, synthesis_func = FLAVOURS[flavour]
    draw = _Draw(seed)
    num_ws = int(np.log2(kwargs.get("resolution", 1024))) * 2 - 2
    mapping = Network(_state(version, "G_mapping", "G_mapping", dict(kwargs, dlatent_broadcast=num_ws),
                             mapping_variables(kwargs, draw), {}, module_src))
    synthesis = Network(_state(version, "G_synthesis", synthesis_func, kwargs,
                               synthesis_variables(kwargs, draw, const_scale), {}, module_src))
    own = [("dlatent_avg", draw.normal([kwargs.get("dlatent_size", 512)], 0.5))]
    if flavour == "stylegan2":  # NVlabs/stylegan2's G_main keeps progressive growing's level, always 0
        own.insert(0, ("lod", np.float32(0)))
    gs = Network(_state(version, "G", "G_main", kwargs, own, {"mapping": mapping, "synthesis": synthesis},
                        module_src))
    d = Network(_state(version, "D", "D_stylegan2" if flavour == "stylegan2" else "D_main", kwargs, [], {},
                       module_src))
    return gs, d, gs


def stylegan1_networks(seed: int = 0) -> tuple[Network, Network, Network]:
    """A StyleGAN (v1) `G_style` with a few of its AdaIN (`StyleMod`) and progressive `ToRGB_lod` variables."""
    draw = _Draw(seed)
    synthesis = Network(_state(3, "G_synthesis", "G_synthesis", {"resolution": 8},
                               [("lod", np.float32(0)), ("4x4/Const/const", draw.normal([1, 8, 4, 4])),
                                ("4x4/Const/StyleMod/weight", draw.normal([8, 16])),
                                ("ToRGB_lod0/weight", draw.normal([1, 1, 8, 3]))], {}, ""))
    mapping = Network(_state(3, "G_mapping", "G_mapping", {}, [("Dense0/weight", draw.normal([8, 8]))], {}, ""))
    gs = Network(_state(3, "G", "G_style", {"resolution": 8}, [("dlatent_avg", draw.normal([8]))],
                        {"mapping": mapping, "synthesis": synthesis}, ""))
    return gs, Network(_state(3, "D", "D_basic", {}, [], {}, "")), gs


def write(path: Path, networks, protocol: int = 4) -> Path:
    """Pickle the networks as TF-era NVlabs code did (`pickle.dump((G, D, Gs), f, protocol=4)` in training;
    protocol 4 is the highest Python 3.6/3.7 had)."""
    with _nvlabs_names():
        data = pickle.dumps(networks, protocol=protocol)
    Path(path).write_bytes(data)
    return Path(path)


# the two networks whose NVlabs legacy.py conversions made tests/data/tf_stylegan2/*.npy
REFERENCES = {
    "tf_sg2_uncond32": dict(flavour="stylegan2", seed=11, kwargs=dict(
        latent_size=32, dlatent_size=32, resolution=32, num_channels=3, fmap_base=256, fmap_max=32,
        mapping_layers=2, label_size=0)),
    "tf_ada_cond64": dict(flavour="ada", seed=12, kwargs=dict(
        latent_size=24, dlatent_size=32, label_size=4, label_fmaps=16, mapping_fmaps=40, resolution=64,
        num_channels=3, fmap_base=128, fmap_max=16, mapping_layers=3, architecture="resnet", conv_clamp=0.5,
        num_fp16_res=2)),
}


def write_reference(path: Path, name: str, module_src: str = "", protocol: int = 4) -> Path:
    ref = REFERENCES[name]
    return write(path, stylegan2_networks(ref["kwargs"], ref["seed"], ref["flavour"], module_src), protocol)
