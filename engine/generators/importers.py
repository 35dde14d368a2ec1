"""Any supported model file -> one of our generators, and `masquerade models import` / `models info`.

Formats are told apart by their bytes, never by the file name:
  safetensors   8-byte little-endian header length, then a JSON header: our own model file (Masquerade
                metadata), or a bare state dict (rosinality or DCGAN-style tensors).
  torch zip     `torch.save` since 1.6 (a zip archive); torch legacy: the pickled magic number
                0x1950a86a20f9469cfc6c. Both are read with `torch.load(weights_only=True)`, which
                rebuilds tensors and plain containers and refuses every other global (only
                `argparse.Namespace`, the `args` rosinality's train.py saves, is added: a plain attribute
                bag). Inside: a rosinality checkpoint (`g_ema`, `latent_avg`) or a DCGAN-style state dict.
  pickle        NVlabs StyleGAN2-ADA `.pkl`, read by `nvlabs_pickle`'s restricted unpickler; a pickle whose
                first class is `dnnlib.tflib.network.Network` is TensorFlow-era StyleGAN2 (`tf_pickle`).
Every loader returns the module (eval mode, CPU) and a `ModelCard` whose provenance names the source
file, its format and its sha256; `import_model` saves that as our `.safetensors` (`checkpoint.save`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import pickle
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from engine.generators import checkpoint, limits, pickle_guard
from engine.generators.checkpoint import CheckpointError, ModelCard

TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # pickle of 0x1950a86a20f9469cfc6c
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_STARTS = b"\x80(}]"  # PROTO (protocol 2+), MARK, EMPTY_DICT, EMPTY_LIST (protocols 0 and 1)

FORMATS = {  # what `source_format` says
    "masquerade": "Masquerade model file (safetensors)",
    "nvlabs": "NVlabs StyleGAN2-ADA / StyleGAN3 pickle",
    "rosinality": "rosinality stylegan2-pytorch checkpoint",
    "dcgan": "DCGAN-style state dict",
    "biggan": "pytorch-pretrained-biggan BigGAN-deep (config.json + pytorch_model.bin)",
    "lightweight-gan": "lucidrains lightweight-gan checkpoint",
    "lucidrains-stylegan2": "lucidrains stylegan2-pytorch checkpoint",
    "tf-stylegan2": "TensorFlow StyleGAN2 / StyleGAN2-ADA pickle",
}


def known_formats() -> str:
    """The formats read here, for the message that says a file is none of them (docs/models.md has more)."""
    return "; ".join(FORMATS.values()) + " (see docs/models.md)"


class UnknownFormatError(CheckpointError):
    """Not a model file of any format read here."""


class UnsafeCheckpointError(CheckpointError):
    """A torch checkpoint naming a global that would run code if loaded the ordinary way."""


@dataclass
class Loaded:
    module: torch.nn.Module
    card: ModelCard  # provenance: source_file, source_format, source_sha256 and the converter's notes
    format: str  # a key of FORMATS: what the file just read is
    container: str  # safetensors, torch zip, torch legacy, pickle


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sniff(path: Path) -> str:
    """'safetensors', 'torch zip', 'torch legacy' or 'pickle', from the file's first bytes."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(ZIP_MAGIC):
        return "torch zip"
    if head.startswith(TORCH_LEGACY_MAGIC):
        return "torch legacy"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 8 + header_len <= size:
            return "safetensors"
    if head[:1] and head[:1] in PICKLE_STARTS:
        return "pickle"
    raise UnknownFormatError(f"{path}: unknown model format; known: {known_formats()}" if size
                             else f"{path}: empty file")


def read_torch(path: Path):
    """`torch.load(weights_only=True)`, with errors named after the file and on one line."""
    pickle_guard.check_torch_file(path)  # torch's reader bounds neither nesting nor shared references
    try:
        allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
        with allow([argparse.Namespace]) if allow else contextlib.nullcontext():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = (f"names {pickle_guard.quote(found.group(1))}" if found
                else "holds objects other than tensors and plain containers")
        raise UnsafeCheckpointError(f"{path}: refused: the checkpoint {what}; loading it the ordinary way could "
                                    "run code (only tensors and plain containers are read)") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: not a readable torch checkpoint, truncated or damaged "
                              f"({type(e).__name__}: {one_line(e).split('. ')[0][:200]})") from None


def _card(path: Path, module: torch.nn.Module, architecture: str, provenance: dict) -> ModelCard:
    return ModelCard(path, architecture, module.config, provenance, sum(p.numel() for p in module.parameters()))


def _build(path: Path, architecture: str, config: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    try:
        module = limits.create(architecture, config, path)  # refused from the config when too large
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot build {architecture!r}: {one_line(e)}") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit {architecture!r}: {one_line(e)[:300]}") from None
    return module.eval().requires_grad_(False)


def from_state(path: Path, obj) -> tuple[torch.nn.Module, str, dict, str]:
    """(module, architecture, provenance notes, format key) for what a torch checkpoint or a bare
    safetensors file held."""
    from engine.generators import biggan, dcgan_import, lucidrains, rosinality

    if biggan.is_biggan_state(obj):  # the package's layout; its config.json lies beside the file
        g, notes = biggan.build(obj, path)
        return g, "biggan", notes, "biggan"
    if (found := lucidrains.recognise(obj)) is not None:  # {'GAN': state dict} of lightweight-gan or stylegan2-pytorch
        g, architecture, notes, fmt = lucidrains.build(obj, found, str(path))
        return g, architecture, notes, fmt
    if isinstance(obj, dict) and (entry := rosinality.pick_entry(obj)) is not None:
        g, notes = rosinality.build(obj[entry], obj.get("latent_avg"), str(path))
        return g, "stylegan2", {"entry": entry, **notes}, "rosinality"
    if isinstance(obj, dict) and rosinality.is_rosinality_state(obj):  # a bare g_ema state dict
        g, notes = rosinality.build(obj, None, str(path))
        return g, "stylegan2", notes, "rosinality"
    try:
        found = dcgan_import.recognise(dcgan_import.unwrap(obj, str(path)), str(path))
    except dcgan_import.NotAStackError as e:
        raise UnknownFormatError(f"{path}: holds no generator read here (rosinality StyleGAN2, DCGAN-style "
                                 f"transposed-conv stack): {str(e).removeprefix(f'{path}: ')}") from None
    module = _build(path, found.architecture, found.config, found.state)
    notes = {"layout": found.layout}
    if found.architecture == "tconv-stack":
        notes["assumed"] = ("strides, paddings and activations (ReLU hidden, Tanh out) from the "
                            f"{found.layout} layout; weights give only channels and kernels")
    return module, found.architecture, notes, "dcgan"


def load(path: str | Path) -> Loaded:
    """Any supported file -> Loaded(module in eval mode on the CPU, card, format, container)."""
    path = Path(path)
    if path.is_dir():  # a pytorch-pretrained-biggan folder: config.json + pytorch_model.bin
        from engine.generators import biggan

        try:
            _, weights = biggan.files(path)
        except CheckpointError as e:
            raise type(e)(one_line(e)) from None
        path = weights
    container = sniff(path)
    try:
        _refuse_a_non_generator(path, container)
        loaded = _load(path, container)
    except CheckpointError as e:  # the command line prints one line, quoting at most a little of the file
        raise type(e)(pickle_guard.quote(e, len(str(path)) + 300)) from None
    if not hasattr(loaded.module, "z_dim"):  # a generator: anything with z_dim, resolution and __call__
        raise CheckpointError(f"{path} holds a {loaded.card.architecture} network, not a generator")
    return loaded


# Masquerade files that are not generators, and how each is used: a show naming one as its model is told, and
# `models info` describes it from its metadata (nothing is built), so an artist can tell what a file is for.
_FINE_TUNE = "a discriminator, for fine-tuning beside its generator (masquerade train --from GENERATOR)"
NON_GENERATORS = {
    "superres-compact": 'a super-resolution filter: [[filters]] kind = "superres", path = "{path}"',
    "style-transformer": 'a style-transfer filter: [[filters]] kind = "style", path = "{path}"',
    "dcgan-discriminator": _FINE_TUNE,
    "stylegan2-discriminator": _FINE_TUNE,
    "lightweight-gan-discriminator": _FINE_TUNE,
}


def _our_card(path: Path) -> checkpoint.ModelCard | None:
    with contextlib.suppress(CheckpointError):  # not ours: the readers further on say what is wrong
        return checkpoint.read_card(path)
    return None


def describe_non_generator(path: str | Path) -> str | None:
    """`models info` for one of our files that holds a filter network or a discriminator; None otherwise."""
    path = Path(path)
    card = _our_card(path) if path.is_file() and path.suffix == ".safetensors" else None
    if card is None or card.architecture not in NON_GENERATORS:
        return None
    return f"{card.describe()}\n  {'use':<13} {NON_GENERATORS[card.architecture].format(path=path)}"


def _refuse_a_non_generator(path: Path, container: str) -> None:
    """Our discriminator, super-resolution or style files named where a generator is wanted: said so, from the
    metadata, before anything is built."""
    card = _our_card(path) if container == "safetensors" else None
    if card is None or card.architecture not in NON_GENERATORS:
        return
    if "discriminator" in card.architecture:
        raise CheckpointError(f"{path} holds a discriminator ({card.architecture}), not a generator: name the "
                              "generator's file")
    raise CheckpointError(f"{path} holds {NON_GENERATORS[card.architecture].format(path=path)}; not a generator")


def _load(path: Path, container: str) -> Loaded:
    def source() -> dict:
        return {"source_file": path.name, "source_sha256": sha256(path)}

    if container == "pickle":
        # nesting, shared references, size, before any reader unpickles it (a damaged pickle that is not
        # recognisably TensorFlow's would go to the NVlabs reader: named as that)
        pickle_guard.check_file(path, "NVlabs pickle")
        from engine.generators import tf_pickle
        from engine.generators.nvlabs_pickle import load_nvlabs_pickle

        fmt = "tf-stylegan2" if tf_pickle.is_tf_pickle(path) else "nvlabs"  # its first class says which
        module, card = tf_pickle.load_tf_pickle(path) if fmt == "tf-stylegan2" else load_nvlabs_pickle(path)
        card.provenance = {**source(), "source_format": card.provenance.get("source", FORMATS[fmt]),
                           **card.provenance}
        return Loaded(module, card, fmt, container)
    if container == "safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                ours = "masquerade.format" in (f.metadata() or {})
                tensors = {} if ours else {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({one_line(e)})") from None
        if ours:
            module, card = checkpoint.load(path)
            card.parameters = sum(p.numel() for p in module.parameters())
            return Loaded(module, card, "masquerade", container)
        obj = tensors
    else:
        obj = read_torch(path)
    module, architecture, notes, fmt = from_state(path, obj)
    provenance = {**source(), "source_format": f"{FORMATS[fmt]} ({container})", **notes}
    return Loaded(module, _card(path, module, architecture, provenance), fmt, container)


def import_model(source: str | Path, target: str | Path) -> Loaded:
    """Convert `source` (any supported format) into our model file at `target`."""
    source, target = Path(source), Path(target)
    if target.suffix != ".safetensors":
        raise CheckpointError(f"{target}: the output must be a .safetensors file")
    if target.exists() and source.exists() and target.resolve() == source.resolve():
        raise CheckpointError(f"{target}: the output would overwrite its source")
    loaded = load(source)
    if loaded.format == "masquerade":  # already ours: keep its provenance, which names its own source if any
        for key, value in {"source_file": source.name, "source_format": FORMATS["masquerade"],
                           "source_sha256": sha256(source)}.items():
            loaded.card.provenance.setdefault(key, value)
    checkpoint.save(loaded.module, loaded.card.architecture, target, loaded.card.provenance)
    return loaded


def describe(loaded: Loaded) -> str:
    """What `masquerade models info` prints: a summary every architecture answers, then the config and
    the provenance."""
    m, card = loaded.module, loaded.card
    mapping = getattr(m, "mapping", None)
    c_dim = getattr(m, "c_dim", 0) or 0
    channels = getattr(m, "img_channels", card.config.get("out_channels", 3))
    summary = {
        "format": f"{FORMATS[loaded.format]}" + ("" if loaded.format == "masquerade" else f", {loaded.container}"),
        "architecture": card.architecture,
        "resolution": getattr(m, "resolution", "?"),
        "z_dim": getattr(m, "z_dim", "?"),
        "w_dim": getattr(m, "w_dim", "none (no mapping network)"),
        "mapping": f"{mapping.num_layers} layers" if mapping is not None else "none",
        "conditional": f"yes (c_dim {c_dim})" if c_dim else "no (c_dim 0)",
        "channels": f"{channels}" + (" (grey, shown as RGB)" if channels == 1 else ""),
        "parameters": f"{sum(p.numel() for p in m.parameters()):,}",
    }
    lines = [str(card.path)] + [f"  {k:<13} {v}" for k, v in summary.items()]
    names = getattr(m, "class_names", None)  # BigGAN: ImageNet's, for style.class and walk.classes
    if names:
        lines.append(f"  {'classes':<13} {len(names)}: the number for style.class / walk.classes, then its name")
        row = "   "
        for i, name in enumerate(names):
            item = f" {i} {name};"
            if len(row) + len(item) > 100:
                lines.append(row)
                row = "   "
            row += item
        lines.append(row)
    for key, value in card.config.items():
        if key in summary or key == "img_resolution":
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"  {key}")
            lines += [f"    {i:<11} {_layer(v)}" for i, v in enumerate(value)]
        else:
            lines.append(f"  {key:<13} {json.dumps(value) if isinstance(value, dict | list) else value}")
    lines += [f"  {k:<13} {json.dumps(v) if isinstance(v, dict | list) else v}" for k, v in card.provenance.items()]
    return "\n".join(lines)


def _layer(d: dict) -> str:
    from engine.generators.tconv_stack import Layer

    try:
        return Layer.from_config(d).describe()
    except ValueError:
        return json.dumps(d)
