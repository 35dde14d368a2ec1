"""How big a network a model file may ask for, checked from its config before any weight is allocated.

A foreign checkpoint's config is data: 276 bytes of NVlabs pickle saying `w_dim=60000` ask for a mapping
network of 8 x 60000 x 60000 weights, about 100 GB, and building it would take the machine down before
the weights are found not to fit. So the network is built first on PyTorch's "meta" device (shapes only,
no memory), its parameters and buffers counted as they are registered, and refused beyond the limit:
`MAX_MODEL_GB` gigabytes of float32 weights unless `masquerade --max-model-gb N` or the environment
variable MASQUERADE_MAX_MODEL_GB says otherwise (the largest published StyleGAN generators take about
0.15 GB). A config with more than MAX_MODULES submodules is refused too: building even the empty shells
of a million layers takes minutes.
"""

from __future__ import annotations

import json
import math
import os

import torch
from torch import nn

from engine import generators
from engine.errors import MasqueradeError

ENV = "MASQUERADE_MAX_MODEL_GB"
MAX_MODEL_GB = 4.0
MAX_MODULES = 100_000


class ModelTooLargeError(MasqueradeError):
    """A model file whose config asks for a network beyond the limit; the message names the file and the way
    to raise the limit. (Not a ValueError: a loader's "cannot build from this config" must not swallow it.)"""


class _Stop(Exception):
    pass


def max_bytes() -> float:
    """The limit in bytes: MASQUERADE_MAX_MODEL_GB gigabytes, else MAX_MODEL_GB."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return MAX_MODEL_GB * 1e9
    try:
        gb = float(text)
    except ValueError:
        gb = math.nan
    if not (math.isfinite(gb) and gb > 0):
        raise ModelTooLargeError(f"{ENV}={text[:40]!r}: expected a positive number of gigabytes")
    return gb * 1e9


def check(architecture: str, config: dict, source) -> int:
    """Raise ModelTooLargeError if `architecture(**config)` would hold more than the limit in parameters and
    buffers, else return the bytes it will hold. A config the constructor refuses passes (0): the real build
    reports it in the loader's words."""
    limit = max_bytes()
    count = {"bytes": 0, "modules": 0}

    def on_tensor(module, name, tensor):
        if tensor is not None:
            count["bytes"] += tensor.numel() * max(tensor.element_size(), 4)  # float32 at least, as loaded
            if count["bytes"] > limit:
                raise _Stop

    def on_module(module, name, submodule):
        count["modules"] += 1
        if count["modules"] > MAX_MODULES:
            raise _Stop

    hooks = [nn.modules.module.register_module_parameter_registration_hook(on_tensor),
             nn.modules.module.register_module_buffer_registration_hook(on_tensor),
             nn.modules.module.register_module_module_registration_hook(on_module)]
    try:
        with torch.device("meta"):
            generators.create(architecture, **config)
    except _Stop:
        what = (f"more than {MAX_MODULES:,} layers" if count["modules"] > MAX_MODULES
                else f"more than {limit / 1e9:g} GB of weights")
        raise ModelTooLargeError(
            f"{source}: refused: its config asks for a {architecture} network with {what} ({_quote(config)}); "
            f"a trusted file: raise the limit with `masquerade --max-model-gb N` or {ENV}=N") from None
    except (TypeError, ValueError, KeyError, RuntimeError, NotImplementedError, AttributeError):
        return 0  # the real build says what is wrong with the config
    finally:
        for hook in hooks:
            hook.remove()
    return count["bytes"]


def create(architecture: str, config: dict, source) -> nn.Module:
    """`generators.create(architecture, **config)`, after `check`: for configs read from a file. Within the
    limit but beyond this machine's memory is a ModelTooLargeError too, not a traceback."""
    need = check(architecture, config, source)
    try:
        return generators.create(architecture, **config)
    except (MemoryError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "allocate" not in str(e):
            raise
        size = f" (about {need / 1e9:.1f} GB of weights)" if need else ""
        raise ModelTooLargeError(f"{source}: not enough memory on this machine for its {architecture} "
                                 f"network{size}") from None


def _quote(config: dict, limit: int = 100) -> str:
    try:
        text = json.dumps(config, default=str)
    except (TypeError, ValueError, RecursionError):
        text = str(type(config).__name__)
    return text if len(text) <= limit else text[: limit - 1] + "…"
