"""Read NVlabs StyleGAN2-ADA-PyTorch and StyleGAN3 pickles (`network-snapshot-*.pkl`, the published
`ffhq.pkl`, `stylegan3-t-ffhq-1024x1024.pkl`, ...) into `stylegan2.Generator` or `stylegan3.Generator`,
without their code and without executing anything from the file.

The format (StyleGAN2-ADA, Karras et al. 2020, arXiv:2006.06676): `pickle.dump(dict(G=..., D=..., G_ema=...,
augment_pipe=..., training_set_kwargs=...))`, where every network goes through NVlabs'
`torch_utils.persistence`: each module is stored as the call
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with `meta = dict(type='class', version=6,
module_src=<the full Python source of its module>, class_name=..., state=<the module's __dict__: _parameters,
_buffers, _modules, _init_args, _init_kwargs, ...>)`. NVlabs' own loader `exec`s `module_src`, and a plain
`pickle.load` calls whatever global the file names, so either way a pickle is a program.

Here `find_class` answers only a short list of names: torch's tensor rebuilders (the ones
`torch.load(weights_only=True)` trusts; storages are themselves read by `torch.load(weights_only=True)`),
`collections.OrderedDict`, sets, numpy scalars/arrays/dtypes, `dnnlib.EasyDict` as a plain dict, and the
persistence hook, which here returns an inert `PersistentRecord` (the source kept as a string, never run).
Any other name raises `UnsafePickleError` before anything is called. The records then become a generator
(built from the recorded constructor kwargs: StyleGAN3 when the synthesis network has Fourier features, an
`input` layer; StyleGAN2 otherwise) and a state dict (the nested `_parameters`/`_buffers`/`_modules`),
loaded with `strict=True`. StyleGAN3 pickles have the same layout (Karras et al. 2021, arXiv:2106.12423).
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch._utils
from torch import nn

from engine.generators import limits, pickle_guard, stylegan2_config
from engine.generators.checkpoint import CheckpointError, ModelCard

PERSISTENT_HOOK = ("torch_utils.persistence", "_reconstruct_persistent_obj")
GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
                  "synthesis_kwargs")


class NVlabsPickleError(CheckpointError):
    """An NVlabs pickle that cannot be used; the message names the file and what is wrong."""


class UnsafePickleError(NVlabsPickleError):
    """The pickle names a global outside the allowed list (it would run code if loaded normally)."""


@dataclass
class PersistentRecord:
    """What NVlabs' persistence stored for one module, as data: nothing of it is executed."""

    class_name: str
    state: dict
    module_src: str = field(default="", repr=False)
    version: int | None = None

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})

    @property
    def modules(self) -> dict:
        return {k: v for k, v in (self.state.get("_modules") or {}).items() if v is not None}


class EasyDict(dict):
    """Stands in for `dnnlib.EasyDict` (a dict with attribute access) as a plain dict."""


def _persistent_record(meta) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise UnsafePickleError("malformed torch_utils.persistence record (expected a dict with type='class')")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise UnsafePickleError(f"persistent {meta['class_name']} has a non-dict state ({type(state).__name__})")
    return PersistentRecord(meta["class_name"], state, str(meta.get("module_src", "")), meta.get("version"))


def _storage_from_bytes(data: bytes):
    # torch pickles a storage as `torch.storage._load_from_bytes(<legacy torch.save bytes>)`; torch's own
    # weights-only reader parses those bytes without running code
    pickle_guard.check_torch_legacy(io.BytesIO(data), "a tensor storage in the pickle", len(data))  # it unpickles too
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError(f"numpy scalar of dtype {dtype!r} refused (only plain numeric dtypes are read)")
    if isinstance(data, str):  # protocol 2 writes bytes as latin-1 text
        data = data.encode("latin1")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"numpy array subtype {subtype!r} refused")
    return np.ndarray.__new__(np.ndarray, shape, np.uint8)  # shape and dtype are set by __setstate__


def _codecs_encode(text, encoding="latin1"):
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} refused")
    return text.encode("latin1")


def _copyreg_reconstructor(cls, base, state):
    # protocol 0/1 spelling of "make an instance of cls"; only the plain containers above qualify
    if cls not in (EasyDict, OrderedDict) or base not in (object, dict):
        raise UnsafePickleError(f"copyreg._reconstructor for {cls!r} refused")
    obj = cls()
    if state is not None:
        obj.update(state)
    return obj


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): torch._utils._rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch", "Size"): torch.Size,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "dict"): dict,  # the base class protocols 0 and 1 name for dict subclasses
    ("builtins", "object"): object,
    ("__builtin__", "set"): set,  # protocols 0-2 write Python 2 module names
    ("__builtin__", "frozenset"): frozenset,
    ("__builtin__", "dict"): dict,
    ("__builtin__", "object"): object,
    ("_codecs", "encode"): _codecs_encode,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
    ("copy_reg", "_reconstructor"): _copyreg_reconstructor,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    PERSISTENT_HOOK: _persistent_record,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Answers only the globals in `_ALLOWED`; every other name is refused before it could be called."""

    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is None and module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            found = getattr(torch, name)
        if found is None:
            hint = " (a TensorFlow-era pickle: `masquerade models import` reads those)" if module.startswith(
                "dnnlib.tflib") else ""
            raise UnsafePickleError(f"refused global {pickle_guard.quote(f'{module}.{name}')}: not a tensor, "
                                    f"container or NVlabs network "
                                    f"record, and loading it could run code{hint}")
        return found

    def persistent_load(self, pid):
        raise UnsafePickleError(f"refused persistent id {pid!r}: NVlabs pickles do not use them")


def read_pickle(path: str | Path) -> dict:
    """The pickle's top-level dict with every network as a `PersistentRecord` (tensors rebuilt, nothing run)."""
    path = Path(path)
    if not path.is_file():
        raise NVlabsPickleError(f"{path}: no such file")
    try:
        pickle_guard.check_file(path, "NVlabs pickle")  # nesting, shared references, size: before unpickling
    except pickle_guard.DamagedPickleError as e:
        raise NVlabsPickleError(str(e)) from None
    try:
        with open(path, "rb") as f:
            data = RestrictedUnpickler(f).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except NVlabsPickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            RuntimeError, OverflowError, MemoryError, OSError) as e:
        raise NVlabsPickleError(f"{path}: not a readable NVlabs pickle, truncated or damaged "
                                f"({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise NVlabsPickleError(f"{path}: expected a dict of networks (G, D, G_ema, ...), got {type(data).__name__}")
    return data


def state_dict_of(record: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers of a record and its sub-records, keyed as `nn.Module.state_dict`."""
    state, out = record.state, {}
    non_persistent = set(state.get("_non_persistent_buffers_set") or ())
    tensors = list((state.get("_parameters") or {}).items())
    tensors += [(k, v) for k, v in (state.get("_buffers") or {}).items() if k not in non_persistent]
    for name, value in tensors:
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise NVlabsPickleError(f"{prefix}{name} of {record.class_name} is {type(value).__name__}, not a tensor")
        out[prefix + name] = value.detach()
    for name, sub in record.modules.items():
        if not isinstance(sub, PersistentRecord):
            raise NVlabsPickleError(f"{prefix}{name} of {record.class_name} is {type(sub).__name__}, "
                                    "not an NVlabs network record")
        out.update(state_dict_of(sub, f"{prefix}{name}."))
    return out


def generator_config(record: PersistentRecord) -> dict:
    """Generator kwargs from what the record says its constructor got (positional args too; StyleGAN3's
    positional order is StyleGAN2's, its synthesis kwargs are keywords)."""
    kwargs = dict(zip(GENERATOR_ARGS, record.init_args))
    kwargs.update(record.init_kwargs)
    return _plain(kwargs)


ARCHITECTURE_NAMES = {"stylegan2": "StyleGAN2", "stylegan3": "StyleGAN3"}
SOURCES = {"stylegan2": "NVlabs StyleGAN2-ADA pickle", "stylegan3": "NVlabs StyleGAN3 pickle"}


def architecture_of(record: PersistentRecord) -> str:
    """'stylegan3' when the synthesis network starts from Fourier features (an `input` layer), else 'stylegan2'."""
    synthesis = record.modules.get("synthesis", PersistentRecord("", {}))
    return "stylegan3" if "input" in synthesis.modules else "stylegan2"


def load_nvlabs_pickle(path: str | Path, which: str = "G_ema") -> tuple[nn.Module, ModelCard]:
    """The generator stored under `which` ('G_ema', the averaged weights NVlabs renders with, or 'G'),
    as a `stylegan2.Generator` or `stylegan3.Generator`, in eval mode on the CPU, and a card describing it
    (architecture, config, the pickle's other entries)."""
    path = Path(path)
    data = read_pickle(path)
    if which not in data:
        raise NVlabsPickleError(f"{path}: no {which!r} in this pickle; it holds {', '.join(map(str, data))}")
    record = data[which]
    if not isinstance(record, PersistentRecord):
        raise NVlabsPickleError(f"{path}: {which!r} is {type(record).__name__}, not an NVlabs network")
    if record.class_name != "Generator":
        found = pickle_guard.quote(record.class_name, 40)
        if "discriminator" in found.lower():
            raise NVlabsPickleError(f"{path}: {which!r} holds a discriminator (NVlabs {found}), not a generator")
        raise NVlabsPickleError(f"{path}: {which!r} is an NVlabs {found}, not a Generator")
    architecture = architecture_of(record)
    name = ARCHITECTURE_NAMES[architecture]
    config, flat = generator_config(record), False
    try:
        if architecture == "stylegan2":
            config, flat = stylegan2_config.nest_flat_kwargs(config)
            config = with_recorded_clamp(record, config)
            stylegan2_config.check(config)
        module = limits.create(architecture, config, path)  # refused from the config when too large
    except (TypeError, ValueError, KeyError) as e:
        raise NVlabsPickleError(f"{path}: cannot build a {name} generator from {which!r}'s kwargs: {e} "
                                f"(kwargs {config})") from None  # the reason first: long lines are cut
    try:
        module.load_state_dict(state_dict_of(record), strict=True)
    except RuntimeError as e:
        raise NVlabsPickleError(f"{path}: {which!r}'s weights do not fit {name}: {e}") from None
    provenance = {"source": SOURCES[architecture], "file": path.name, "entry": which,
                  "entries": sorted(map(str, data))}
    if flat:
        provenance["layout"] = "NVlabs stylegan3 repository's networks_stylegan2 (flat synthesis kwargs)"
    training_set = data.get("training_set_kwargs")
    if isinstance(training_set, dict):
        provenance["training_set_kwargs"] = _plain(training_set)
    card = ModelCard(path, architecture, module.config, provenance,
                     sum(p.numel() for p in module.parameters()))
    return module.eval().requires_grad_(False), card


def with_recorded_clamp(record: PersistentRecord, config: dict) -> dict:
    """The config with the `conv_clamp` that the synthesis layers themselves hold (NVlabs keeps it as a
    module attribute, and that is what its forward uses), so a default that differs between NVlabs'
    repositories cannot change the image. Unchanged when no layer records one."""
    clamps = {repr(c): c for c in _layer_clamps(record)}
    if len(clamps) > 1:
        raise ValueError(f"its synthesis layers hold different conv_clamp values ({', '.join(sorted(clamps))})")
    synthesis = dict(config.get("synthesis_kwargs") or {})
    if clamps and synthesis.get("conv_clamp") != (clamp := next(iter(clamps.values()))):
        config = {**config, "synthesis_kwargs": {**synthesis, "conv_clamp": clamp}}
    return config


def _layer_clamps(record: PersistentRecord, depth: int = 0) -> list:
    if depth > 8:  # Generator > synthesis > block > layer: deeper is not a StyleGAN2
        return []
    found = [_plain(record.state["conv_clamp"])] if record.class_name in ("SynthesisLayer", "ToRGBLayer") \
        and "conv_clamp" in record.state else []
    for sub in record.modules.values():
        if isinstance(sub, PersistentRecord):
            found += _layer_clamps(sub, depth + 1)
    return found


def _plain(value):
    """EasyDicts, tuples and numpy scalars as JSON-ready Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
