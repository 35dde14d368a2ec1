"""GANSpace directions: the principal axes of the model's latent distribution (Härkönen et al. 2020,
"GANSpace: Discovering Interpretable GAN Controls", arXiv:2004.02546).

Sample N z's, map them (StyleGAN: the mapping network's w, one row of ws; DCGAN-family: z itself, whose
axes are then only those of the Gaussian prior), and take the PCA of what comes out: unit directions
d_i sorted by their standard deviation sigma_i. `apply` moves a latent by sum_i amount_i * sigma_i * d_i,
so an amount of 1 is one standard deviation along that axis; for StyleGAN ws, `layers` limits the move
to a range of layers (GANSpace's layer-wise edits: coarse layers pose, fine layers colour).

Cache: one `.safetensors` per model and setting, named by the model file's sha256
(`<sha256>-k<components>-n<samples>-s<seed>.safetensors`), tensors `directions` [k, dim], `sigmas`
[k], `mean` [dim]; metadata `masquerade.directions` "1", `model_sha256`, `components`, `samples`,
`seed`, `space` ("w" or "z"). Written atomically (temporary file, then rename).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from engine.errors import MasqueradeError
from engine.latent import file_sha256

FORMAT_VERSION = "1"


class DirectionsError(MasqueradeError, ValueError):
    """Directions that cannot be computed, read or applied; the message says which and why."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "masquerade" / "directions"


@dataclass(frozen=True)
class Directions:
    directions: torch.Tensor  # [k, dim] orthonormal rows, sorted by sigma, largest first
    sigmas: torch.Tensor  # [k] standard deviation of the samples along each direction
    mean: torch.Tensor  # [dim] mean of the samples (w_avg's estimate, for StyleGAN)
    space: str  # "w" (StyleGAN: apply to w or ws) or "z" (DCGAN family)
    samples: int
    seed: int
    model_sha256: str = ""

    @property
    def components(self) -> int:
        return self.directions.shape[0]


def compute(generator, components: int = 16, samples: int = 10_000, seed: int = 0, batch: int = 2_000,
            model_sha256: str = "") -> Directions:
    """PCA of `samples` mapped latents from a seeded Gaussian; deterministic for a given seed."""
    space = "w" if hasattr(generator, "mapping") else "z"
    z_dim = generator.z_dim
    dim = generator.w_dim if space == "w" else z_dim
    if not 1 <= components <= min(dim, samples - 1):
        raise DirectionsError(f"components must be 1..{min(dim, samples - 1)} for this model "
                              f"({space} has {dim} dimensions, {samples} samples), got {components}")
    gen = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    c_dim = getattr(generator, "c_dim", 0)
    rows = []
    with torch.no_grad():
        for start in range(0, samples, batch):
            n = min(batch, samples - start)
            z = torch.randn(n, z_dim, generator=gen)  # [n, z_dim], drawn on the CPU: same on every device
            if space == "z":
                rows.append(z.double())
                continue
            c = None
            if c_dim:  # conditional model: a seeded random class per sample
                c = torch.nn.functional.one_hot(torch.randint(0, c_dim, (n,), generator=gen), c_dim).float()
                c = c.to(device)
            ws = generator.mapping(z.to(device), c)  # [n, num_ws, w_dim]; truncation psi = 1
            rows.append(ws[:, 0].double().cpu())  # [n, w_dim]: every row of ws is the same w
    x = torch.cat(rows)  # [samples, dim]
    mean = x.mean(0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)  # vh [dim', dim], s sorted descending
    d = vh[:components]
    flip = torch.sign(d.gather(1, d.abs().argmax(1, keepdim=True)))  # largest entry positive: a fixed sign
    d = d * flip
    sigmas = s[:components] / (samples - 1) ** 0.5
    return Directions(d.float().contiguous(), sigmas.float().contiguous(), mean.float().contiguous(), space,
                      samples, seed, model_sha256)


def cache_path(cache_dir: str | Path, model_sha256: str, components: int, samples: int, seed: int) -> Path:
    return Path(cache_dir) / f"{model_sha256}-k{components}-n{samples}-s{seed}.safetensors"


def load_or_compute(generator, model_path: str | Path, components: int = 16, samples: int = 10_000, seed: int = 0,
                    cache_dir: str | Path | None = None) -> Directions:
    """The directions for the model in `model_path` (whose module is `generator`), from the cache when
    this model file (by sha256) and these settings were seen before, else computed and cached."""
    sha = file_sha256(model_path)
    path = cache_path(default_cache_dir() if cache_dir is None else cache_dir, sha, components, samples, seed)
    if path.is_file():
        try:
            return load(path, sha)
        except DirectionsError:
            pass  # a damaged or foreign cache file: recompute and replace it
    found = compute(generator, components, samples, seed, model_sha256=sha)
    save(found, path)
    return found


def save(found: Directions, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"masquerade.directions": FORMAT_VERSION, "model_sha256": found.model_sha256,
                "components": str(found.components), "samples": str(found.samples), "seed": str(found.seed),
                "space": found.space}
    tensors = {"directions": found.directions, "sigmas": found.sigmas, "mean": found.mean}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(path: str | Path, model_sha256: str | None = None) -> Directions:
    """Directions from a cache file; with `model_sha256`, refuse those made for another model."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in ("directions", "sigmas", "mean")}
    except (SafetensorError, OSError, ValueError) as e:
        raise DirectionsError(f"{path}: not a readable directions file ({e})") from None
    if meta.get("masquerade.directions") != FORMAT_VERSION:
        raise DirectionsError(f"{path}: not a Masquerade directions file")
    if model_sha256 is not None and meta.get("model_sha256") != model_sha256:
        raise DirectionsError(f"{path}: made for model sha256 {meta.get('model_sha256')}, not {model_sha256}")
    try:
        found = Directions(tensors["directions"], tensors["sigmas"], tensors["mean"], meta["space"],
                           int(meta["samples"]), int(meta["seed"]), meta["model_sha256"])
    except (KeyError, ValueError) as e:
        raise DirectionsError(f"{path}: incomplete metadata ({e})") from None
    if found.components != int(meta.get("components", -1)):
        raise DirectionsError(f"{path}: metadata says {meta.get('components')} components, "
                              f"the file holds {found.components}")
    return found


def offset(found: Directions, amounts: Sequence[float] | Mapping[int, float]) -> torch.Tensor:
    """sum_i amount_i * sigma_i * d_i -> [dim]. `amounts`: a list (direction 0, 1, ...; missing ones
    are 0) or {index: amount}; amounts are in standard deviations."""
    pairs = amounts.items() if isinstance(amounts, Mapping) else enumerate(amounts)
    total = torch.zeros_like(found.mean)
    for i, amount in pairs:
        if not isinstance(i, int) or not 0 <= i < found.components:
            raise DirectionsError(f"direction {i!r} does not exist: there are {found.components} (0..."
                                  f"{found.components - 1})")
        total = total + float(amount) * found.sigmas[i] * found.directions[i]
    return total


def apply(latent: torch.Tensor, found: Directions, amounts: Sequence[float] | Mapping[int, float],
          layers: tuple[int, int] | range | None = None) -> torch.Tensor:
    """Move z [B, z_dim], w [B, w_dim] or ws [B, num_ws, w_dim] along the directions; returns a new
    tensor. `layers` (ws only): the (start, stop) range of ws rows to move; the others stay."""
    dim = found.directions.shape[1]
    if latent.ndim not in (2, 3) or latent.shape[-1] != dim:
        raise DirectionsError(f"latent must be [B, {dim}] or [B, num_ws, {dim}] for these {found.space}-space "
                              f"directions, got {list(latent.shape)}")
    move = offset(found, amounts).to(latent.device, latent.dtype)  # [dim]
    if layers is None:
        return latent + move
    if latent.ndim != 3:
        raise DirectionsError("layers applies to StyleGAN ws [B, num_ws, w_dim] only; this latent is "
                              f"{list(latent.shape)}")
    start, stop = (layers.start, layers.stop) if isinstance(layers, range) else layers
    if not 0 <= start < stop <= latent.shape[1]:
        raise DirectionsError(f"layers must be a range within 0..{latent.shape[1]} with start < stop, "
                              f"got {start}..{stop}")
    out = latent.clone()
    out[:, start:stop] += move
    return out
