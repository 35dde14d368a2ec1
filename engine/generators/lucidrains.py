"""lucidrains' training checkpoints, `models/<name>/model_N.pt` = `{'GAN': state_dict, 'version': ...}`, read
with `torch.load(weights_only=True)`: lightweight-gan (`GAN.G`, `GAN.GE`: `lightweight_gan.Generator`) and
stylegan2-pytorch (`GAN.S`, `GAN.G`, `GAN.SE`, `GAN.GE`).

The files hold no constructor arguments, so they are inferred from key names and shapes and listed in the
model card's provenance (`inferred`): latent size from `initial_conv.0.weight`, image size from the number
of layers, every layer's width, which widths have attention, the excitation kind, the output channels.
Attention heads (8 x 64) are the package's fixed defaults and are checked against the weights. What cannot
be inferred is refused in one line naming the file and the key.

stylegan2-pytorch: latent size and style depth from `S.net.*`, image size from the number of `G.blocks`,
network capacity and fmap_max from the blocks' widths, attention layers from `G.attns.*`, transparent from
the RGB layers' outputs, no_const from `G.to_initial_block`. The style network's learning-rate multiplier
(`lr_mlp`) scales its weights at run time but is not in the file: it is read from the trainer's
`.config.json` beside the checkpoint (models/<name>/.config.json), else the package's default 0.1 is
assumed, and the card says which.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from engine.generators.checkpoint import CheckpointError

LIGHTWEIGHT, STYLEGAN2 = "lightweight-gan", "lucidrains-stylegan2"


class LucidrainsError(CheckpointError):
    """A lucidrains checkpoint that cannot be read; the message names the file and the key."""


def recognise(obj) -> str | None:
    """LIGHTWEIGHT, STYLEGAN2 or None, from the keys under 'GAN'."""
    gan = obj.get("GAN") if isinstance(obj, dict) else None
    if not isinstance(gan, dict):
        return None
    keys = [k for k in gan if isinstance(k, str)]
    if any(k.startswith(("S.", "SE.")) for k in keys) and any(re.match(r"GE?\.(initial_block|blocks)\b", k)
                                                              for k in keys):
        return STYLEGAN2  # first: its generator has an `initial_conv` too
    if any(re.match(r"GE?\.initial_conv\.", k) for k in keys):
        return LIGHTWEIGHT
    return None


def build(obj: dict, kind: str, where: str) -> tuple[torch.nn.Module, str, dict, str]:
    """(module in eval mode, architecture, provenance notes, format key)."""
    if kind == STYLEGAN2:
        return build_stylegan2(obj, where)
    gan = obj["GAN"]
    prefix = "GE." if any(k.startswith("GE.") for k in gan) else "G."
    state = {k[len(prefix):]: v for k, v in gan.items() if k.startswith(prefix)}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise LucidrainsError(f"{where}: GAN.{prefix}{k} is not a tensor")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise LucidrainsError(f"{where}: GAN.{prefix}{k} holds NaN or infinite values")
    config = infer_lightweight(state, f"{where}: GAN.{prefix}")
    from engine.generators.lightweight_gan import Generator

    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in Generator(**config).state_dict().items()}
    except ValueError as e:
        raise LucidrainsError(f"{where}: {e}") from None
    for key in sorted(set(expected) | set(state)):
        if key not in state or key not in expected or tuple(state[key].shape) != expected[key]:
            what = "missing" if key not in state else "unexpected" if key not in expected else \
                f"shape {list(state[key].shape)}, expected {list(expected[key])}"
            raise LucidrainsError(f"{where}: GAN.{prefix}{key}: {what} for a lightweight-gan generator "
                                  f"inferred as {config} (another version of the package?)")
    g = Generator(**config)
    g.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    version = obj.get("version")
    notes = {"entry": f"GAN.{prefix[:-1]}" + (" (EMA)" if prefix == "GE." else ""),
             "package_version": str(version) if isinstance(version, str | int | float) else "not saved",
             "inferred": ("from shapes: latent_dim, image_size, channels, attn_res_layers, sle, out_channels; "
                          f"assumed: attention {8}x{64} heads, noise fixed per layer (the package draws it anew)")}
    return g.eval().requires_grad_(False), "lightweight-gan", notes, LIGHTWEIGHT


def _shape(state: dict, key: str, where: str, ndim: int) -> tuple[int, ...]:
    if key not in state:
        raise LucidrainsError(f"{where}{key}: missing; cannot infer the generator's layout")
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise LucidrainsError(f"{where}{key}: shape {list(shape)}, expected {ndim} dimensions")
    return shape


def infer_lightweight(state: dict, where: str) -> dict:
    """Constructor arguments of lightweight_gan.Generator from its state dict's names and shapes."""
    latent, twice, kh, kw = _shape(state, "initial_conv.0.weight", where, 4)
    if twice != 2 * latent or (kh, kw) != (4, 4):
        raise LucidrainsError(f"{where}initial_conv.0.weight: shape {[latent, twice, kh, kw]} is not "
                              "[latent, 2 latent, 4, 4]")
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k))})
    if not indices or indices != list(range(len(indices))) or len(indices) > 10:
        raise LucidrainsError(f"{where}layers.*: expected layers 0..n-1 (n <= 10), found {indices[:12]}")
    channels, attn = [], []
    for i in indices:
        out2, c_in, k1, k2 = _shape(state, f"layers.{i}.0.2.1.weight", where, 4)
        if (k1, k2) != (4, 4) or out2 % 2:
            raise LucidrainsError(f"{where}layers.{i}.0.2.1.weight: shape {[out2, c_in, k1, k2]} is not a 4x4 "
                                  "conv to an even width")
        channels.append(out2 // 2)
        if f"layers.{i}.2.fn.to_q.weight" in state:
            attn.append(2 ** (i + 2))
    fca = any(re.match(r"layers\.\d+\.1\.dct_weights", k) for k in state)
    out = _shape(state, "out_conv.weight", where, 4)[0]
    return dict(latent_dim=latent, image_size=2 ** (len(indices) + 2), channels=channels, attn_res_layers=attn,
                sle="fca" if fca else "global_context", out_channels=out)


def _tensors(gan: dict, prefix: str, where: str) -> dict[str, torch.Tensor]:
    """The entries under `prefix`, each checked to be a finite tensor."""
    state = {k[len(prefix):]: v for k, v in gan.items() if isinstance(k, str) and k.startswith(prefix)}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise LucidrainsError(f"{where}: GAN.{prefix}{k} is not a tensor")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise LucidrainsError(f"{where}: GAN.{prefix}{k} holds NaN or infinite values")
    return state


def build_stylegan2(obj: dict, where: str) -> tuple[torch.nn.Module, str, dict, str]:
    """A stylegan2-pytorch checkpoint -> (lucidrains_stylegan2.Generator, architecture, notes, format key)."""
    from engine.generators import limits, lucidrains_stylegan2

    gan = obj["GAN"]
    ema = any(isinstance(k, str) and k.startswith("GE.") for k in gan)
    s_prefix, g_prefix = ("SE.", "GE.") if ema else ("S.", "G.")
    s_state, g_state = _tensors(gan, s_prefix, where), _tensors(gan, g_prefix, where)
    if not s_state:
        raise LucidrainsError(f"{where}: GAN.{s_prefix}net.0.weight: missing; the generator GAN.{g_prefix[:-1]} "
                              "needs its style network")
    config = infer_stylegan2(s_state, g_state, f"{where}: GAN.{s_prefix}", f"{where}: GAN.{g_prefix}")
    lr_note = _lr_mlp(Path(where), config)
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in lucidrains_stylegan2.Generator(**config).state_dict().items()}
    except ValueError as e:
        raise LucidrainsError(f"{where}: {e}") from None
    state = {**{f"mapping.{k}": v for k, v in s_state.items()}, **{f"synthesis.{k}": v for k, v in g_state.items()}}
    expected.pop("mapping.w_avg")  # not in the file: estimated below
    for key in sorted(set(expected) | set(state)):
        if key not in state or key not in expected or tuple(state[key].shape) != expected[key]:
            net, name = key.split(".", 1)
            source = f"GAN.{s_prefix if net == 'mapping' else g_prefix}{name}"
            what = "missing" if key not in state else "unexpected" if key not in expected else \
                f"shape {list(state[key].shape)}, expected {list(expected[key])}"
            raise LucidrainsError(f"{where}: {source}: {what} for a stylegan2-pytorch generator inferred as "
                                  f"{config} (another version of the package?)")
    try:
        g = limits.create("lucidrains-stylegan2", config, where)
    except ValueError as e:
        raise LucidrainsError(f"{where}: {e}") from None
    state["mapping.w_avg"] = torch.zeros(config["latent_dim"])
    g.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    g.estimate_w_avg()
    version = obj.get("version")
    notes = {"entry": f"GAN.{s_prefix[:-1]} + GAN.{g_prefix[:-1]}" + (" (EMA)" if ema else ""),
             "package_version": str(version)[:40] if isinstance(version, str | int | float) else "not saved",
             "inferred": ("from shapes: image_size, latent_dim, style_depth, network_capacity, fmap_max (the "
                          "widest layer), attn_layers, transparent, no_const; " + lr_note + "; assumed: attention "
                          f"{lucidrains_stylegan2.HEADS}x{lucidrains_stylegan2.DIM_HEAD} heads; noise: one fixed "
                          "image (the package draws it anew); w_avg: mean style of "
                          f"{lucidrains_stylegan2.AVG_SAMPLES} seeded z")}
    return g.eval().requires_grad_(False), "lucidrains-stylegan2", notes, STYLEGAN2


def _indices(state: dict, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.match(pattern, k))})


def infer_stylegan2(s_state: dict, g_state: dict, s_where: str, g_where: str) -> dict:
    """Constructor arguments of lucidrains_stylegan2.Generator (the package's StyleGAN2's, less lr_mlp) from
    the style network's and the generator's names and shapes; every number checked before anything is built."""
    from engine.generators.lucidrains_stylegan2 import MAX_DEPTH, MAX_LATENT, MAX_SIZE, MIN_SIZE, filters_for

    latent, latent_in = _shape(s_state, "net.0.weight", s_where, 2)
    if latent != latent_in or not 1 <= latent <= MAX_LATENT:
        raise LucidrainsError(f"{s_where}net.0.weight: shape {[latent, latent_in]} is not [latent, latent] with "
                              f"latent 1..{MAX_LATENT}")
    layers = _indices(s_state, r"net\.(\d+)\.")
    depth = len(layers)
    if layers != list(range(0, 2 * depth, 2)) or depth > MAX_DEPTH:
        raise LucidrainsError(f"{s_where}net.*: expected layers 0, 2, .. 2(n-1) (n <= {MAX_DEPTH}), "
                              f"found {layers[:12]}")
    blocks = _indices(g_state, r"blocks\.(\d+)\.")
    n = len(blocks)
    if blocks != list(range(n)) or not MIN_SIZE <= 2 ** (n + 1) <= MAX_SIZE:
        raise LucidrainsError(f"{g_where}blocks.*: expected blocks 0..n-1 for an image of {MIN_SIZE}..{MAX_SIZE} "
                              f"px (n = 2..{MAX_SIZE.bit_length() - 2}), found {blocks[:12]}")
    image_size = 2 ** (n + 1)
    filters = []
    for i in blocks:
        c_out, c_in, kh, kw = _shape(g_state, f"blocks.{i}.conv1.weight", g_where, 4)
        if (kh, kw) != (3, 3):
            raise LucidrainsError(f"{g_where}blocks.{i}.conv1.weight: shape {[c_out, c_in, kh, kw]} is not a 3x3 "
                                  "modulated conv")
        filters += [c_in] if i == 0 else []
        filters.append(c_out)
    capacity, fmap_max = filters[-1] // 2, max(filters)
    if filters[-1] % 2 or filters != filters_for(image_size, max(capacity, 1), fmap_max):
        raise LucidrainsError(f"{g_where}blocks.*.conv1.weight: widths {filters[:12]} are not the package's "
                              "(network_capacity x 2, x 4, .. from the last block back, at most fmap_max)")
    rgb = _shape(g_state, f"blocks.{n - 1}.to_rgb.conv.weight", g_where, 4)[0]
    if rgb not in (3, 4):
        raise LucidrainsError(f"{g_where}blocks.{n - 1}.to_rgb.conv.weight: {rgb} output channels, expected 3 "
                              "(RGB) or 4 (transparent)")
    no_const = "to_initial_block.weight" in g_state
    if not no_const:
        _shape(g_state, "initial_block", g_where, 4)
    attn = [n - i for i in _indices(g_state, r"attns\.(\d+)\.")]
    for i in _indices(g_state, r"attns\.(\d+)\."):
        inner = _shape(g_state, f"attns.{i}.0.fn.fn.to_q.weight", g_where, 4)[0]
        if inner != 8 * 64:
            raise LucidrainsError(f"{g_where}attns.{i}.0.fn.fn.to_q.weight: {inner} channels, expected 512 "
                                  "(8 heads of 64, the package's)")
    return dict(image_size=image_size, latent_dim=latent, style_depth=depth, network_capacity=capacity,
                fmap_max=fmap_max, attn_layers=sorted(attn), transparent=rgb == 4, no_const=no_const, lr_mlp=0.1)


CONFIG_NAME, CONFIG_MAX_BYTES = ".config.json", 1 << 16


def _lr_mlp(path: Path, config: dict) -> str:
    """Sets config['lr_mlp'] from the trainer's .config.json beside the checkpoint, if there is one; returns
    the card's note saying where it came from."""
    found = path.parent / CONFIG_NAME
    if not found.is_file():
        return f"lr_mlp {config['lr_mlp']} assumed (the package's default; no {CONFIG_NAME} beside the file)"
    try:
        if found.stat().st_size > CONFIG_MAX_BYTES:
            raise ValueError(f"larger than {CONFIG_MAX_BYTES} bytes")
        saved = json.loads(found.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise LucidrainsError(f"{found}: not a readable stylegan2-pytorch config ({type(e).__name__})") from None
    if not isinstance(saved, dict):
        raise LucidrainsError(f"{found}: not a stylegan2-pytorch config (not a JSON object)")
    for key in ("image_size", "transparent", "no_const"):
        if key in saved and saved[key] != config[key]:
            raise LucidrainsError(f"{found}: {key} {str(saved[key])[:20]}, but {path.name} holds a model with "
                                  f"{key} {config[key]}: the config belongs to another model")
    lr = saved.get("lr_mlp", 0.1)
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not (math.isfinite(lr) and 0 < lr <= 100):
        raise LucidrainsError(f"{found}: lr_mlp {str(lr)[:20]} is not a number in (0, 100]")
    config["lr_mlp"] = float(lr)
    return f"lr_mlp {float(lr)} from {CONFIG_NAME}"
