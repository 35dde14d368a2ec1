"""Writes the foreign checkpoints the import tests read, without the packages that define them.

The reference images in tests/data/{biggan,lucidrains}/ were made by the packages' own code (see the
READMEs there) from state dicts filled by `fill` below, from the key -> shape lists those packages gave
(`*_shapes.json`, committed). `fill` needs only numpy and torch and gives the same numbers on every
machine (an integer hash, no floating-point library calls), so the test rebuilds the very weights the
references were made with and no weights are committed. The reference scripts import this file too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def uniform(n: int, seed: int) -> np.ndarray:
    """n numbers in [0, 1) from splitmix64 of (seed, index): exact integer arithmetic, float64 out."""
    with np.errstate(over="ignore"):
        z = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed) * np.uint64(
            0xD1B54A32D192ED03)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _value(key: str, shape: list[int], seed: int) -> torch.Tensor:
    n = int(np.prod(shape)) if shape else 1
    a = 2 * uniform(n, seed) - 1  # [-1, 1)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.tensor(1000)
    if leaf in ("running_var", "running_vars"):
        x = 1 + 0.5 * a
    elif leaf in ("running_mean", "running_means"):
        x = 0.2 * a
    elif leaf == "f" and shape == [3]:  # lightweight-gan's Blur taps: a fixed filter, not learned
        x = np.array([1.0, 2.0, 1.0])
    elif leaf in ("weight", "weight_orig", "g") and len(shape) <= 1 or leaf == "g":
        x = 1 + 0.2 * a  # norm gains (and noise strengths)
    elif leaf in ("bias", "b", "gamma") or len(shape) <= 1:
        x = 0.1 * a
    else:
        fan_in = int(np.prod(shape[1:]))
        x = a * np.sqrt(3.0 / max(fan_in, 1))  # unit variance through a layer, roughly
    return torch.from_numpy(x.reshape(shape)).float()


def standing(key: str, base: np.ndarray, shape: list[int], seed: int) -> torch.Tensor:
    """Batch-norm statistics from measured per-channel ones (`base` [C]): random weights with made-up
    statistics blow activations up layer after layer. A [n_stats, C] table (BigGAN's per-truncation
    statistics) varies from row to row, so that picking and interpolating rows shows in the image."""
    base = np.asarray(base, np.float64)
    if len(shape) == 1:
        return torch.from_numpy(base).float()
    a = (2 * uniform(int(np.prod(shape)), seed) - 1).reshape(shape)
    if key.endswith("running_means"):
        return torch.from_numpy(base[None] * (1 + 0.2 * a)).float()
    return torch.from_numpy(base[None] * (1 + 0.3 * a)).float()


def fill(shapes: dict[str, list[int]], seed: int, measured: dict[str, np.ndarray] | None = None
         ) -> dict[str, torch.Tensor]:
    """A state dict with these keys and shapes, the same numbers everywhere. Spectral-norm vectors are made
    consistent with their weight (v random and unit, u = W v / |W v|: one power iteration, as the BigGAN
    package's TF converter does), so that sigma = u . W v is the weight's scale, not noise. `measured`:
    per-channel batch-norm statistics by key (see `calibrate`)."""
    measured = measured or {}
    state = {key: standing(key, measured[key], shape, seed + i) if key in measured else _value(key, shape, seed + i)
             for i, (key, shape) in enumerate(shapes.items())}
    for key in shapes:
        if key.endswith("weight_orig") and key[:-4] + "u" in shapes:
            w = state[key].double().reshape(state[key].shape[0], -1)
            v = state[key[:-4] + "v"].double()
            v = v / v.norm()
            u = w @ v
            state[key[:-4] + "v"], state[key[:-4] + "u"] = v.float(), (u / u.norm()).float()
    return state


def read_shapes(path: str | Path) -> dict[str, list[int]]:
    return json.loads(Path(path).read_text())


def write_shapes(state: dict[str, torch.Tensor], path: str | Path) -> None:
    Path(path).write_text(json.dumps({k: list(v.shape) for k, v in state.items()}, indent=0) + "\n")


def calibrate(model: torch.nn.Module, shapes: dict[str, list[int]], seed: int, run) -> dict[str, np.ndarray]:
    """Run `run()` once with every batch-norm layer of `model` (a module holding running_mean(s) and
    running_var(s)) measuring its input's per-channel mean and variance just before it normalises, and
    setting its statistics from them the way `fill` does. Returns the measurements by state-dict key, for
    `fill(..., measured=...)`. Used by the reference scripts only."""
    index = {key: i for i, key in enumerate(shapes)}
    measured: dict[str, np.ndarray] = {}
    hooks = []
    for name, module in model.named_modules():
        suffix = "s" if hasattr(module, "running_means") else "" if hasattr(module, "running_mean") else None
        if suffix is None:
            continue

        def hook(mod, args, name=name, suffix=suffix):
            x = args[0].detach().double()
            mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False).clamp(min=1e-2)
            for stat, value in (("mean", mean), ("var", var)):
                key = f"{name}.running_{stat}{suffix}"
                measured[key] = value.float().numpy()
                buffer = getattr(mod, f"running_{stat}{suffix}")
                buffer.copy_(standing(key, measured[key], list(buffer.shape), seed + index[key]))

        hooks.append(module.register_forward_pre_hook(hook))
    with torch.no_grad():
        run()
    for h in hooks:
        h.remove()
    return measured


# lucidrains stylegan2-pytorch: its style network's EqualLinear layers multiply weight and bias by lr_mlp at run
# time, so the stored numbers are 1 / lr_mlp times the effective ones (as in a trained checkpoint)
STYLE_GAIN = 3.0  # and a little larger than `fill`'s unit-variance scale, so that z visibly changes the picture


def lucidrains_stylegan2(shapes: dict[str, list[int]], seeds: dict[str, int], lr_mlp: float = 0.1
                         ) -> dict[str, torch.Tensor]:
    """The trainer's `GAN` state dict for the nets in `seeds` ({'S': 1, 'G': 2, 'SE': 3, 'GE': 4}): `shapes`
    holds the style network's keys as 'S.*' and the generator's as 'G.*'; SE and GE take S's and G's
    shapes with their own seeds."""
    gan = {}
    for part, seed in seeds.items():
        net = part[0]  # S or G
        own = {k[len(net) + 1:]: v for k, v in shapes.items() if k.startswith(net + ".")}
        state = fill(own, seed)
        if net == "S":
            state = {k: v * (STYLE_GAIN / lr_mlp) for k, v in state.items()}
        gan.update({f"{part}.{k}": v for k, v in state.items()})
    return gan
