"""`masquerade inspect`: is the GAN inventing, or memorising? A static HTML report (no server) with

- a snapshot browser: the same latent walk rendered by every snapshot of a run, beside its sample grid
  and loss plot, so an artist can pick the step where it looks best;
- a novelty inspector: for generated samples (and any still the show saved, `--image`), the nearest
  training images, and a memorisation score.

Distance. There is no ImageNet network to download here, so the features come from what the run has:
its own discriminator (the network trained to tell this very data set apart), an early layer
(colour and texture, pooled to 8x8) and its last one (layout, 4x4), plus the pixels themselves at
32x32 so that a half-trained discriminator cannot make everything look alike. The distance is
1 - cosine similarity, averaged over those three. Without a discriminator beside the model, pixels alone.

Memorisation score: a sample whose nearest training image is much closer than training images are to
each other (less than `COPY_RATIO` of the median nearest-neighbour distance within the training set) is
counted as a copy; the score is the fraction of samples counted. A copy has distance ~0 in every feature
space; a novel sample sits about as far from its neighbour as training images sit from theirs (ratio ~1).
"""

from __future__ import annotations

import html
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.errors import MasqueradeError
from engine.training.gan import load_folder, sample_grid

COPY_RATIO = 0.25
PIXELS = 32  # side of the pixel feature


class InspectError(MasqueradeError):
    pass


def sample_latents(z_dim: int, n: int, seed: int = 0) -> torch.Tensor:
    """The latents the report's samples come from: [n, z_dim], the same for every snapshot."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


def walk_latents(z_dim: int, frames: int = 8, seed: int = 0) -> torch.Tensor:
    """A slerp from one seeded latent to another: [frames, z_dim]."""
    from engine.walks.keyframes import slerp

    a, b = torch.randn(2, z_dim, generator=torch.Generator().manual_seed(10_000 + seed))
    return torch.stack([slerp(a, b, i / max(1, frames - 1)) for i in range(frames)])


class Features:
    """images [B, 3, R, R] in [0, 1] -> list of L2-normalised feature matrices [B, F_k]."""

    def __init__(self, discriminator: torch.nn.Module | None = None):
        self.D = discriminator
        self.names = ["pixels"] + (["D early", "D late"] if discriminator is not None else [])

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        side = min(PIXELS, images.shape[-1])
        out = [F.interpolate(images, size=(side, side), mode="area").flatten(1) * 2 - 1]
        if self.D is not None:
            feats = self.D.features(images)
            early = feats[min(1, len(feats) - 1)]
            out.append(F.adaptive_avg_pool2d(early, min(8, early.shape[-1])).flatten(1))
            out.append(F.adaptive_avg_pool2d(feats[-1], min(4, feats[-1].shape[-1])).flatten(1))
        return [F.normalize(f, dim=1) for f in out]

    def batched(self, images: torch.Tensor, chunk: int = 64) -> list[torch.Tensor]:
        parts = [self(images[i:i + chunk]) for i in range(0, len(images), chunk)]
        return [torch.cat([p[k] for p in parts]) for k in range(len(parts[0]))]


def distances(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Mean over feature kinds of 1 - cosine similarity: [len(a), len(b)], 0 for identical images."""
    return torch.stack([1 - fa @ fb.T for fa, fb in zip(a, b)]).mean(dim=0).clamp_min(0)


def typical_distance(train: list[torch.Tensor], limit: int = 512) -> float:
    """Median distance from a training image to its nearest other training image."""
    n = train[0].shape[0]
    if n < 2:
        return 1.0
    idx = torch.linspace(0, n - 1, min(n, limit)).round().long().unique()
    d = distances([f[idx] for f in train], train)
    d[torch.arange(len(idx)), idx] = math.inf  # not itself
    nearest = d.min(dim=1).values
    return max(float(nearest.median()), 1e-6)


@dataclass
class Novelty:
    """Nearest training images of some images, and what that says about copying."""
    neighbours: torch.Tensor  # [n, k] indices into the training set
    distance: torch.Tensor  # [n, k]
    typical: float  # median nearest-neighbour distance within the training set
    ratio: torch.Tensor = field(init=False)  # [n]: nearest distance / typical
    copies: torch.Tensor = field(init=False)  # [n] bool

    def __post_init__(self):
        self.ratio = self.distance[:, 0] / self.typical
        self.copies = self.ratio < COPY_RATIO

    @property
    def memorisation(self) -> float:
        return float(self.copies.float().mean())


def nearest(images: torch.Tensor, train: torch.Tensor, features: Features, k: int = 3,
            train_features: list[torch.Tensor] | None = None, typical: float | None = None) -> Novelty:
    """images [n, 3, R, R] in [0, 1]; train uint8 [N, 3, R, R] -> the k nearest training images of each."""
    if train_features is None:
        train_features = features.batched(train.float() / 255)
    d = distances(features.batched(images), train_features)
    dist, idx = d.topk(min(k, d.shape[1]), dim=1, largest=False)
    return Novelty(idx, dist, typical if typical is not None else typical_distance(train_features))


@dataclass
class SnapshotReport:
    path: Path
    step: int | None
    kimg: float | None
    walk: Image.Image
    samples: torch.Tensor  # [n, 3, R, R]
    novelty: Novelty
    grid: Path | None  # the trainer's sample grid, if beside it
    losses: Path | None


def _tiles(images: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray((im.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()) for im in images]


def find_snapshots(target: Path, most: int = 8) -> list[Path]:
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise InspectError(f"{target}: no such run folder or model file")
    found = sorted(target.glob("generator-*.safetensors"))
    if not found:
        raise InspectError(f"{target}: no snapshots (generator-*.safetensors) in this run folder")
    if len(found) > most:  # evenly spaced, always the last
        picks = np.linspace(0, len(found) - 1, most).round().astype(int)
        found = [found[i] for i in sorted(set(picks))]
    return found


def _load_snapshot(path: Path):
    """(generator, provenance, discriminator or None) for any model file the project reads."""
    from engine.generators import importers
    from engine.training.nets import discriminator_beside, load_discriminator

    loaded = importers.load(path)
    d_path = discriminator_beside(path)
    D = load_discriminator(d_path)[0] if d_path is not None else None
    return loaded.module.eval(), loaded.card.provenance, D


def inspect(target: str | Path, out: str | Path, data: str | Path | None = None, samples: int = 16, k: int = 3,
            images: tuple[str | Path, ...] = (), seed: int = 0, most: int = 8) -> dict:
    """Write the HTML report `out` (and its images in `<out stem>_files/`); returns a summary dict:
    {"snapshots": [{"path", "step", "memorisation"}], "images": [{"path", "nearest", "distance"}]}."""
    target, out = Path(target), Path(out)
    snapshots = find_snapshots(target, most)
    G, prov, D = _load_snapshot(snapshots[-1])
    if data is None:
        data = (prov.get("config") or {}).get("data")
        if not data:
            raise InspectError(f"{snapshots[-1]}: its provenance names no data set; pass --data FOLDER")
    data = Path(data)
    if not data.is_dir():
        raise InspectError(f"{data}: no such training-set folder (pass --data FOLDER)")
    resolution = G.resolution
    train = load_folder(data, resolution)  # uint8 [N, 3, R, R]
    train_names = sorted(p.name for p in data.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"})
    files = out.parent / f"{out.stem}_files"
    if files.exists():
        shutil.rmtree(files)
    files.mkdir(parents=True)

    reports: list[SnapshotReport] = []
    z, walk_z = sample_latents(G.z_dim, samples, seed), walk_latents(G.z_dim, 8, seed)
    for path in snapshots:
        G, prov, D = _load_snapshot(path)
        if G.resolution != resolution:
            raise InspectError(f"{path}: {G.resolution} px, but the run's last snapshot is {resolution} px")
        features = Features(D)
        with torch.no_grad():
            generated = G(z)  # [n, 3, R, R]
            walk = sample_grid(G(walk_z), columns=len(walk_z))
        reports.append(SnapshotReport(path, prov.get("steps"), prov.get("kimg"), walk, generated,
                                      nearest(generated, train, features, k), _beside(path, "samples", ".png"),
                                      _beside(path, "losses", ".png")))

    # stills the show saved, compared with the last snapshot's features
    extra = []
    if images:
        features = Features(D)
        stills = torch.stack([_read(p, resolution) for p in images])
        extra = [(Path(p), nearest(stills[j:j + 1], train, features, k)) for j, p in enumerate(images)]

    _write_html(out, files, target, data, train, train_names, reports, extra)
    return {"snapshots": [{"path": str(r.path), "step": r.step, "memorisation": r.novelty.memorisation,
                           "median_ratio": float(r.novelty.ratio.median())} for r in reports],
            "images": [{"path": str(p), "nearest": train_names[int(n.neighbours[0, 0])],
                        "distance": float(n.distance[0, 0]), "copy": bool(n.copies[0])} for p, n in extra]}


def _beside(path: Path, kind: str, suffix: str) -> Path | None:
    if not path.stem.startswith("generator-"):
        return None
    p = path.with_name(f"{kind}-{path.stem.removeprefix('generator-')}{suffix}")
    return p if p.is_file() else None


def _read(path: str | Path, resolution: int) -> torch.Tensor:
    try:
        im = Image.open(path).convert("RGB")
    except OSError as e:
        raise InspectError(f"{path}: not a readable image ({e})") from None
    if im.size != (resolution, resolution):  # a show's still is usually bigger: centre square, then down
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.LANCZOS)
    return torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255


CSS = """body{font-family:system-ui,sans-serif;background:#16161a;color:#ddd;margin:2em}
h1,h2,h3{font-weight:500} img{image-rendering:pixelated;vertical-align:middle}
.row{display:flex;gap:6px;align-items:center;margin:4px 0} .row figure{margin:0;text-align:center;font-size:11px}
.copy{outline:3px solid #e44} .score{font-size:1.3em} .bad{color:#f66} .ok{color:#6c6}
table{border-collapse:collapse} td,th{padding:4px 10px;border-bottom:1px solid #333;text-align:left}
a{color:#9cf}"""


def _write_html(out, files, target, data, train, train_names, reports, extra) -> None:
    scale = max(1, 96 // train.shape[-1])

    def save(im: Image.Image, name: str, upscale: bool = True) -> str:
        if upscale and scale > 1:
            im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
        im.save(files / name)
        return html.escape(f"{files.name}/{name}")

    train_tiles: dict[int, str] = {}

    def train_tile(i: int) -> str:
        if i not in train_tiles:
            train_tiles[i] = save(_tiles(train[i:i + 1].float() / 255)[0], f"train-{i:05d}.png")
        return train_tiles[i]

    def neighbour_row(query: str, nov: Novelty, j: int, caption: str) -> str:
        cls = ' class="copy"' if nov.copies[j] else ""
        cells = [f'<figure><img{cls} src="{query}"><figcaption>{html.escape(caption)}<br>ratio '
                 f'{float(nov.ratio[j]):.2f}{" COPY" if nov.copies[j] else ""}</figcaption></figure>', "→"]
        for n, d in zip(nov.neighbours[j].tolist(), nov.distance[j].tolist()):
            cells.append(f'<figure><img src="{train_tile(n)}"><figcaption>{html.escape(train_names[n][:24])}'
                         f'<br>d {d:.3f}</figcaption></figure>')
        return f'<div class="row">{"".join(cells)}</div>'

    parts = [f"<!doctype html><meta charset=utf-8><title>Masquerade inspect: {html.escape(str(target))}</title>",
             f"<style>{CSS}</style><h1>What did the GAN learn? {html.escape(str(target))}</h1>",
             f"<p>Training set: {html.escape(str(data))} ({len(train)} images). Distance: 1 − cosine similarity, "
             f"averaged over the pixels ({PIXELS}×{PIXELS}) and, when the snapshot has its discriminator beside "
             "it, that discriminator's early and late layers. A sample is counted as a copy when its "
             f"nearest training image is closer than {COPY_RATIO:g} × the median nearest-neighbour distance "
             "within the training set (ratio below). Memorisation score: the fraction of samples counted.</p>",
             "<h2>Snapshots</h2><table><tr><th>snapshot</th><th>step</th><th>kimg</th><th>memorisation</th>"
             "<th>median ratio</th></tr>"]
    for r in reports:
        cls = "bad" if r.novelty.memorisation > 0 else "ok"
        parts.append(f'<tr><td><a href="#{r.path.stem}">{html.escape(r.path.name)}</a></td><td>{r.step}</td>'
                     f'<td>{r.kimg}</td><td class="{cls}">{r.novelty.memorisation:.0%}</td>'
                     f"<td>{float(r.novelty.ratio.median()):.2f}</td></tr>")
    parts.append("</table><h2>The same walk, snapshot by snapshot</h2>")
    for r in reports:
        parts.append(f'<div class="row"><span style="width:16em">{html.escape(r.path.stem)}</span>'
                     f'<img src="{save(r.walk, f"walk-{r.path.stem}.png")}"></div>')
    for r in reports:
        cls = "bad" if r.novelty.memorisation > 0 else "ok"
        parts.append(f'<h2 id="{r.path.stem}">{html.escape(r.path.name)}</h2>'
                     f'<p class="score">memorisation score <span class="{cls}">{r.novelty.memorisation:.0%}</span> '
                     f"({int(r.novelty.copies.sum())} of {len(r.samples)} samples copy a training image)</p>")
        for kind, src in (("sample grid", r.grid), ("losses", r.losses)):
            if src is not None:
                shutil.copy(src, files / f"{r.path.stem}-{src.name}")
                parts.append(f'<p>{kind}<br><img src="{html.escape(files.name)}/'
                             f'{html.escape(r.path.stem)}-{html.escape(src.name)}"></p>')
        parts.append("<h3>Samples and their nearest training images</h3>")
        for j, tile in enumerate(_tiles(r.samples)):
            parts.append(neighbour_row(save(tile, f"{r.path.stem}-sample-{j:03d}.png"), r.novelty, j, f"sample {j}"))
    if extra:
        parts.append("<h2>Stills</h2>")
        for j, (path, nov) in enumerate(extra):
            tile = _tiles(_read(path, train.shape[-1])[None])[0]
            parts.append(neighbour_row(save(tile, f"still-{j:03d}.png"), nov, 0, path.name))
    out.write_text("\n".join(parts) + "\n", encoding="utf-8")
