"""The project's own model file: one `.safetensors` whose metadata says how to rebuild the module.

Metadata keys (all strings, as safetensors requires):
  `masquerade.format`        "1"
  `masquerade.architecture`  a name in `engine.generators.ARCHITECTURES`
  `masquerade.config`        JSON of the constructor's arguments
  `masquerade.provenance`    JSON: data set, steps, licence, the command that made it, ...
Loading is a registry lookup plus `load_state_dict`; safetensors holds only tensors, so a model file
can never execute code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from engine.errors import MasqueradeError
from engine.generators import limits

FORMAT_VERSION = "1"


class CheckpointError(MasqueradeError, ValueError):
    """A model file that cannot be used; the message names the file and what is wrong."""


@dataclass
class ModelCard:
    path: Path
    architecture: str
    config: dict
    provenance: dict = field(default_factory=dict)
    parameters: int = 0

    def describe(self) -> str:
        lines = [f"{self.path}", f"  architecture  {self.architecture}",
                 f"  parameters    {self.parameters:,}"]
        lines += [f"  {k:<13} {v}" for k, v in self.config.items()]
        lines += [f"  {k:<13} {v}" for k, v in self.provenance.items()]
        return "\n".join(lines)


def save(module: nn.Module, architecture: str, path: str | Path, provenance: dict | None = None) -> None:
    config = getattr(module, "config", None)
    if config is None:
        raise TypeError(f"{type(module).__name__} has no .config (its constructor arguments)")
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    metadata = {"masquerade.format": FORMAT_VERSION, "masquerade.architecture": architecture,
                "masquerade.config": json.dumps(config),
                "masquerade.provenance": json.dumps(provenance or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)


def read_card(path: str | Path) -> ModelCard:
    """The metadata alone, without building the module."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            parameters = sum(_numel(f.get_slice(k).get_shape()) for k in f.keys()
                             if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("masquerade.format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a Masquerade model file (no masquerade.format metadata); "
                              "convert foreign checkpoints with `masquerade models import`")
    try:
        config = json.loads(meta["masquerade.config"])
        provenance = json.loads(meta.get("masquerade.provenance", "{}"))
        architecture = meta["masquerade.architecture"]
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: damaged metadata ({e})") from None
    return ModelCard(path, architecture, config, provenance, parameters)


def load(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelCard]:
    """Rebuild the module named in the file's metadata and load its weights, in eval mode."""
    card = read_card(path)
    try:
        module = limits.create(card.architecture, card.config, card.path)  # refused from the config when too large
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{card.path}: cannot build {card.architecture!r} from its config: {e}") from None
    try:
        module.load_state_dict(load_file(str(card.path)))
    except (RuntimeError, SafetensorError) as e:
        raise CheckpointError(f"{card.path}: weights do not fit {card.architecture!r}: {e}") from None
    return module.to(device).eval().requires_grad_(False), card


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n
