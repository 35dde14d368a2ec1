"""Read TensorFlow-era StyleGAN2 pickles (NVIDIA's `stylegan2-*-config-f.pkl`, StyleGAN2-ADA TensorFlow
snapshots, RunwayML exports) into `stylegan2.Generator`, without TensorFlow and without executing anything.

The format (Karras et al. 2020, arXiv:1912.04958; the ADA variant arXiv:2006.06676): `pickle.dump((G, D,
Gs))`, each a `dnnlib.tflib.network.Network` whose `__getstate__` gives `dict(version=4 (ADA: 5), name,
static_kwargs=<the build function's keyword arguments>, components={'mapping': Network, 'synthesis':
Network}, build_module_src=<the full source of the module that builds it>, build_func_name, variables=[(name,
numpy array), ...])`. TensorFlow's own loader `exec`s `build_module_src`. Here the `Network` global answers
an inert `NetworkState` that keeps the state as data, numpy arrays are rebuilt by `nvlabs_pickle`'s
restricted unpickler, and every other global is refused before it is called.

`Gs` (the averaged weights) becomes our StyleGAN2 the way NVlabs' `legacy.py` converts it (its
`convert_tf_generator`): the same kwargs (TF `fmap_base` is half our `channel_base`), the same variable
mapping (TF kernels are [k, k, in, out]; TF's up-sampling convolutions are transposed convolutions, so
their kernels are flipped; TF adds the style bias's 1 at run time), `dlatent_avg` as `w_avg`. Configs E
and F (the `G_synthesis_stylegan2` / ADA `G_synthesis` build functions, with modulated convolutions)
are read; StyleGAN (v1) and StyleGAN2 configs A-D are refused by name, as legacy.py refuses them.
"""

from __future__ import annotations

import numbers
import pickle
import pickletools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.generators import limits, pickle_guard, stylegan2_config
from engine.generators.checkpoint import CheckpointError, ModelCard
from engine.generators.nvlabs_pickle import RestrictedUnpickler, UnsafePickleError, _plain

TF_NETWORK = ("dnnlib.tflib.network", "Network")
SUPPORTED = "StyleGAN2 / StyleGAN2-ADA TensorFlow pickles (configs E and F) and NVlabs PyTorch pickles"
SOURCES = {"G_synthesis_stylegan2": "TensorFlow StyleGAN2 pickle (NVlabs stylegan2)",
           "G_synthesis": "TensorFlow StyleGAN2-ADA pickle (NVlabs stylegan2-ada)"}
MAX_DEPTH = 4  # Gs > mapping/synthesis: deeper nesting is not a StyleGAN network


class TFPickleError(CheckpointError):
    """A TensorFlow-era pickle that cannot be used; the message names the file and what is wrong."""


class NetworkState:
    """Stands in for `dnnlib.tflib.network.Network` while unpickling: keeps `__setstate__`'s dict, runs nothing."""

    state: dict

    def __setstate__(self, state) -> None:
        if not isinstance(state, dict):
            raise UnsafePickleError(f"a TensorFlow Network with a non-dict state ({type(state).__name__})")
        self.state = state


class TFUnpickler(RestrictedUnpickler):
    """The NVlabs reader's allow-list plus the TF `Network` class as an inert record."""

    def find_class(self, module: str, name: str):
        if (module, name) == TF_NETWORK:
            return NetworkState
        found = super().find_class(module, name)
        if name == "_reconstructor" and module in ("copyreg", "copy_reg"):
            return _or_network(found)
        return found


def _or_network(containers):
    """Protocols 0 and 1 spell "an instance of Network" as `copyreg._reconstructor(Network, object, None)`;
    every other class goes to the NVlabs reader's rule (plain containers only)."""

    def reconstruct(cls, base, state):
        if cls is NetworkState and base is object and state is None:
            return NetworkState()
        return containers(cls, base, state)

    return reconstruct


@dataclass
class TFNetwork:
    """One TF network's pickled state, checked and as data (`module_src` is kept as text, never run)."""

    name: str
    version: int
    build_func_name: str
    static_kwargs: dict
    components: dict[str, TFNetwork]
    variables: dict[str, np.ndarray]
    module_src: str = field(default="", repr=False)

    def params(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Every variable, sub-networks' under their component key (`mapping/Dense0/weight`), as legacy.py
        collects them."""
        out = {prefix + k: v for k, v in self.variables.items()}
        for key, sub in self.components.items():
            out.update(sub.params(f"{prefix}{key}/"))
        return out


def is_tf_pickle(path: Path, opcodes: int = 64) -> bool:
    """Whether the pickle's first class is a `dnnlib.tflib` one, from its opcodes alone (nothing is built)."""
    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for i, (op, arg, _) in enumerate(pickletools.genops(f)):
                if i >= opcodes:
                    return False
                if isinstance(arg, str):
                    strings.append(arg)
                if op.name in ("GLOBAL", "STACK_GLOBAL"):
                    module = arg.split(" ")[0] if op.name == "GLOBAL" else (strings[-2] if len(strings) > 1 else "")
                    if module not in ("copyreg", "copy_reg"):
                        return module.startswith("dnnlib.tflib")
    except (ValueError, EOFError, OSError, UnicodeDecodeError):
        return False
    return False


def read_tf_pickle(path: Path) -> TFNetwork:
    """`Gs` (the averaged generator) of a `(G, D, Gs)` pickle, or the lone network a file holds."""
    pickle_guard.check_file(path, "TensorFlow pickle")  # nesting, shared references, size: before unpickling
    try:
        with open(path, "rb") as f:
            data = TFUnpickler(f).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            RuntimeError, OverflowError, MemoryError, OSError, RecursionError) as e:
        raise TFPickleError(f"{path}: not a readable TensorFlow pickle, truncated or damaged "
                            f"({type(e).__name__}: {e})") from None
    if isinstance(data, tuple) and len(data) == 3 and all(isinstance(n, NetworkState) for n in data):
        data = data[2]
    if not isinstance(data, NetworkState):
        raise TFPickleError(f"{path}: expected the networks (G, D, Gs) of a TensorFlow pickle, "
                            f"got {type(data).__name__}")
    try:
        return network(data)
    except ValueError as e:
        raise TFPickleError(f"{path}: {e}") from None


def network(record: NetworkState, depth: int = 0) -> TFNetwork:
    """Check one pickled Network's fields and turn it into a `TFNetwork` (ValueError naming what is wrong)."""
    s = getattr(record, "state", None)
    if depth > MAX_DEPTH or not isinstance(s, dict):
        raise ValueError("a TensorFlow Network nested too deep or without state")
    name, func, kwargs = s.get("name"), s.get("build_func_name"), s.get("static_kwargs") or {}
    if not isinstance(name, str) or not isinstance(func, str) or not isinstance(kwargs, dict):
        raise ValueError(f"network {name!r}: name, build_func_name or static_kwargs missing")
    components = s.get("components") or {}
    if not isinstance(components, dict) or not all(isinstance(c, NetworkState) for c in components.values()):
        raise ValueError(f"network {name!r}: components are not TensorFlow Networks")
    version = s.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"network {name!r}: version {version!r} is not a number")
    return TFNetwork(name, version, func, _plain(dict(kwargs)),
                     {str(k): network(c, depth + 1) for k, c in components.items()},
                     _variables(name, s.get("variables")), str(s.get("build_module_src") or ""))


def _variables(net: str, pairs) -> dict[str, np.ndarray]:
    if not isinstance(pairs, (list, tuple)):
        raise ValueError(f"network {net!r}: variables are {type(pairs).__name__}, not a list of (name, array)")
    out = {}
    for pair in pairs:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)):
            raise ValueError(f"network {net!r}: a variable is not a (name, array) pair")
        value = pair[1]
        if isinstance(value, np.generic):
            value = np.asarray(value)
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
            raise ValueError(f"network {net!r}: variable {pair[0]} is not a numeric array")
        if not np.isfinite(value).all():
            raise ValueError(f"network {net!r}: variable {pair[0]} holds NaN or infinite values")
        out[pair[0]] = value
    return out


# ---------------------------------------------------------------- what the network is


def kind_of(gs: TFNetwork) -> str:
    """'stylegan2', or a one-line refusal naming the format: StyleGAN v1 and StyleGAN2 configs A-D have
    AdaIN (`StyleMod`) layers and progressive-growing outputs (`ToRGB_lod*`), not modulated convolutions."""
    names = gs.params()
    synthesis = gs.components.get("synthesis")
    if gs.build_func_name == "G_style" or any("/StyleMod/" in n or "ToRGB_lod" in n for n in names):
        raise ValueError(f"StyleGAN (v1) TensorFlow pickle: not supported; Masquerade reads {SUPPORTED}")
    if synthesis is None or "mapping" not in gs.components:
        raise ValueError(f"TensorFlow network {gs.name!r} ({gs.build_func_name}) has no mapping and synthesis "
                         "components: not a StyleGAN2 generator")
    if synthesis.build_func_name not in SOURCES or "4x4/Conv/mod_weight" not in synthesis.variables:
        raise ValueError(f"TensorFlow StyleGAN2 synthesis {synthesis.build_func_name!r} without modulated "
                         f"convolutions (configs A-D): not supported; Masquerade reads {SUPPORTED}")
    if gs.version < 4:
        raise ValueError(f"TensorFlow network pickle version {gs.version}: too old (StyleGAN2 writes 4 or 5)")
    return "stylegan2"


# legacy.py's list: any other kwarg changes the network in a way its conversion (and ours) does not follow
KNOWN_KWARGS = {"latent_size", "label_size", "dlatent_size", "resolution", "num_channels", "fmap_base", "fmap_max",
                "num_fp16_res", "conv_clamp", "architecture", "resample_kernel", "use_noise", "nonlinearity",
                "mapping_layers", "label_fmaps", "mapping_fmaps", "mapping_nonlinearity", "mapping_lrmul",
                "w_avg_beta", "truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure",
                "conditioning", "fused_modconv"}


def generator_config(gs: TFNetwork) -> dict:
    """Our StyleGAN2 kwargs from the TF build kwargs, as legacy.py's `convert_tf_generator` reads them."""
    kw = gs.static_kwargs
    unknown = sorted(set(kw) - KNOWN_KWARGS)
    if unknown:
        raise ValueError(f"unknown TensorFlow kwargs {', '.join(unknown)}: not a StyleGAN2 config E/F generator")

    def get(name, default, none=None):
        value = kw.get(name, default)
        return none if value is None else value

    fmap_base = get("fmap_base", 16384)
    if isinstance(fmap_base, bool) or not isinstance(fmap_base, numbers.Integral):
        raise ValueError(f"fmap_base is {fmap_base!r}: expected a whole number")
    taps = kw.get("resample_kernel", [1, 3, 3, 1])
    if not isinstance(taps, (list, tuple)):
        raise ValueError(f"resample_kernel is {taps!r}: expected a list of taps (None, a box filter, is not read)")
    mapping = dict(num_layers=get("mapping_layers", 8), embed_features=get("label_fmaps", None),
                   layer_features=get("mapping_fmaps", None), activation=get("mapping_nonlinearity", "lrelu"),
                   lr_multiplier=get("mapping_lrmul", 0.01), w_avg_beta=get("w_avg_beta", 0.995, none=1))
    synthesis = dict(channel_base=int(fmap_base) * 2, channel_max=get("fmap_max", 512),
                     num_fp16_res=get("num_fp16_res", 0), conv_clamp=get("conv_clamp", None),
                     architecture=get("architecture", "skip"), resample_filter=list(taps),
                     use_noise=get("use_noise", True), activation=get("nonlinearity", "lrelu"))
    return dict(z_dim=get("latent_size", 512), c_dim=get("label_size", 0), w_dim=get("dlatent_size", 512),
                img_resolution=get("resolution", 1024), img_channels=get("num_channels", 3),
                mapping_kwargs={k: v for k, v in mapping.items() if v is not None}, synthesis_kwargs=synthesis)


# ---------------------------------------------------------------- variables -> our state dict

Turn = Callable[[np.ndarray], np.ndarray]
SAME: Turn = lambda a: a  # noqa: E731
DENSE: Turn = lambda a: a.T  # noqa: E731  TF dense kernels are [in, out]
CONV: Turn = lambda a: a.transpose(3, 2, 0, 1)  # noqa: E731  [k, k, in, out] -> [out, in, k, k]
CONV_UP: Turn = lambda a: a[::-1, ::-1].transpose(3, 2, 0, 1)  # noqa: E731  TF up-convs are transposed: flip
STYLE_BIAS: Turn = lambda a: a + 1  # noqa: E731  TF adds the 1 at run time, NVlabs' PyTorch initialises at 1
FIRST: Turn = lambda a: a[0]  # noqa: E731  the constant input is stored with a batch axis
NOISE: Turn = lambda a: a[0, 0]  # noqa: E731  noise inputs are [1, 1, R, R]


def _layer(scope: str, attr: str, noise: int, kernel: Turn) -> tuple[str, Turn] | None:
    table = {"weight": (f"{scope}/weight", kernel), "bias": (f"{scope}/bias", SAME),
             "noise_const": (f"synthesis/noise{noise}", NOISE), "noise_strength": (f"{scope}/noise_strength", SAME),
             "affine.weight": (f"{scope}/mod_weight", DENSE), "affine.bias": (f"{scope}/mod_bias", STYLE_BIAS)}
    return table.get(attr)


def tf_source(key: str) -> tuple[str, Turn] | None:
    """The TF variable behind one of our state-dict keys and how to turn it (legacy.py's table)."""
    if key == "mapping.w_avg":
        return "dlatent_avg", SAME
    if m := re.fullmatch(r"mapping\.(embed|fc(\d+))\.(weight|bias)", key):
        scope = "mapping/LabelEmbed" if m[1] == "embed" else f"mapping/Dense{m[2]}"
        return f"{scope}/{m[3]}", DENSE if m[3] == "weight" else SAME
    if key == "synthesis.b4.const":
        return "synthesis/4x4/Const/const", FIRST
    if m := re.fullmatch(r"synthesis\.b(\d+)\.(conv0|conv1|torgb|skip)\.(.+)", key):
        res, layer, attr = int(m[1]), m[2], m[3]
        log2 = res.bit_length() - 1
        at = f"synthesis/{res}x{res}"
        if layer == "skip":
            return (f"{at}/Skip/weight", CONV_UP) if attr == "weight" else None
        if layer == "torgb":
            return _layer(f"{at}/ToRGB", attr, -1, CONV) if "noise" not in attr else None
        scope = "synthesis/4x4/Conv" if res == 4 else f"{at}/Conv0_up" if layer == "conv0" else f"{at}/Conv1"
        return _layer(scope, attr, 2 * log2 - (5 if layer == "conv0" else 4), CONV_UP if layer == "conv0" else CONV)
    return None


def state_dict(gs: TFNetwork, module: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(our state dict from the TF variables, the TF variables nothing used). The filters are the
    module's own: TF computes them from `resample_kernel` too."""
    params, state, used = gs.params(), {}, set()
    for key, target in module.state_dict().items():
        if key.endswith("resample_filter"):
            state[key] = target
            continue
        source = tf_source(key)
        if source is None:
            raise ValueError(f"no TensorFlow variable maps to {key}")
        name, turn = source
        if name not in params:
            raise ValueError(f"no variable {name} (for {key}); the pickle's kwargs and variables disagree")
        try:
            value = torch.from_numpy(np.array(turn(params[name]), dtype=np.float32, order="C"))
        except (IndexError, ValueError):
            value = None
        if value is None or value.shape != target.shape:
            raise ValueError(f"variable {name} has shape {list(params[name].shape)}, which does not give "
                             f"{key}'s {list(target.shape)}")
        state[key] = value
        used.add(name)
    return state, sorted(set(params) - used)


def load_tf_pickle(path: str | Path) -> tuple[nn.Module, ModelCard]:
    """The averaged generator `Gs` as a `stylegan2.Generator` in eval mode on the CPU, and its card."""
    path = Path(path)
    gs = read_tf_pickle(path)
    try:
        kind_of(gs)
        config = generator_config(gs)
        stylegan2_config.check(config)
        module = limits.create("stylegan2", config, path)  # refused from the config when too large
        state, unused = state_dict(gs, module)
        module.load_state_dict(state, strict=True)
    except (ValueError, TypeError, KeyError, RuntimeError) as e:
        raise TFPickleError(f"{path}: {e}") from None
    provenance = {"source": SOURCES[gs.components["synthesis"].build_func_name], "file": path.name,
                  "entry": gs.name, "tf_static_kwargs": gs.static_kwargs}
    if unused:
        provenance["unused_variables"] = unused  # e.g. `lod`, progressive growing's level, fixed at 0
    card = ModelCard(path, "stylegan2", module.config, provenance, sum(p.numel() for p in module.parameters()))
    return module.eval().requires_grad_(False), card

