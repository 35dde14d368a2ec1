"""`masquerade data prepare`: a folder of photos -> a training set the trainer reads.

The output is the same flat layout `engine.training.emoji` writes (one `size`x`size` RGB PNG per image,
`{index:05d}_{name}.png`), plus `manifest.json`: what was kept, and what was dropped and why.

- EXIF orientation is honoured (`ImageOps.exif_transpose`): a phone photo taken upright stays upright.
- Square by centre crop, by "smart" crop (the window along the long side with the most edge energy,
  pulled gently toward the centre), or by padding with the image's mean colour.
- Duplicates: byte-identical files by SHA-256, near duplicates (re-saved, rescaled, recompressed copies)
  by a 63-bit perceptual hash of the square image (pHash: the signs of the lowest 8x8 DCT frequencies of
  a 32x32 grey image against their median, Zauner 2010), within a Hamming distance. It is a few lines of
  numpy here (a DCT is a matrix product) rather than the `imagehash` package, which would bring SciPy and
  PyWavelets. pHash rather than the simpler dHash: on procedural photos with film grain, JPEG and
  rescaled copies stayed within 8 bits and different photos 18 or more apart under pHash, while dHash's
  ranges overlapped (15 vs 15; its bits flip in flat regions).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import MasqueradeError

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
CROPS = ("centre", "smart", "pad")
FEW_IMAGES = 500  # below this, fine-tuning overfits quickly (Karras et al. 2020, ADA, Fig. 1)


class PrepareError(MasqueradeError):
    pass


_N = 32
_DCT = np.cos(np.pi * (2 * np.arange(_N)[None] + 1) * np.arange(_N)[:, None] / (2 * _N))  # [k, n] DCT-II


def phash(image: Image.Image) -> int:
    """Perceptual hash: grey 32x32, 2-D DCT, the 8x8 lowest frequencies but the DC term, one bit each
    (above their median?). Robust to scale, compression, grain and small colour changes."""
    grey = np.asarray(image.convert("L").resize((_N, _N), Image.LANCZOS), dtype=np.float64)
    low = (_DCT @ grey @ _DCT.T)[:8, :8].flatten()[1:]  # [63]
    return int("".join("1" if b else "0" for b in low > np.median(low)), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def square(image: Image.Image, crop: str = "centre") -> Image.Image:
    """The largest square of `image` (centre or smart crop), or the whole image padded to a square."""
    w, h = image.size
    side = min(w, h)
    if crop == "pad":
        big = max(w, h)
        mean = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(axis=0))
        canvas = Image.new("RGB", (big, big), mean)
        canvas.paste(image, ((big - w) // 2, (big - h) // 2))
        return canvas
    if crop == "smart":
        offset = _smart_offset(image)
    elif crop == "centre":
        offset = (max(w, h) - side) // 2
    else:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    box = (offset, 0, offset + side, side) if w >= h else (0, offset, side, offset + side)
    return image.crop(box)


def _smart_offset(image: Image.Image, work: int = 96, centre_weight: float = 0.15) -> int:
    """Offset along the long side of the square window holding the most edge energy (|dx| + |dy| of
    the grey image), with a small preference for the centre so flat images crop like `centre`."""
    w, h = image.size
    if w == h:
        return 0
    scale = work / min(w, h)
    small = image.convert("L").resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    g = np.asarray(small, dtype=np.float32)
    energy = np.zeros_like(g)
    energy[:, 1:] += np.abs(np.diff(g, axis=1))
    energy[1:, :] += np.abs(np.diff(g, axis=0))
    profile = energy.sum(axis=0 if w > h else 1)  # along the long side
    win = min(g.shape)
    sums = np.convolve(profile, np.ones(win), mode="valid")  # energy of every window position
    positions = np.arange(len(sums))
    centre = (len(sums) - 1) / 2
    if len(sums) > 1:
        prior = 1 - centre_weight * np.abs(positions - centre) / centre
        sums = sums * prior
    best = int(np.argmax(sums)) if sums.max() > 0 else round(centre)
    return min(round(best / scale), max(w, h) - min(w, h))


@dataclass
class Manifest:
    source: str
    size: int
    crop: str
    near_duplicate_bits: int
    min_side: int
    kept: list[dict] = field(default_factory=list)  # {source, output, phash}
    duplicates: list[dict] = field(default_factory=list)  # {source, duplicate_of, kind, distance}
    unreadable: list[dict] = field(default_factory=list)  # {source, error}
    too_small: list[dict] = field(default_factory=list)  # {source, width, height}

    def counts(self) -> dict:
        return {"kept": len(self.kept), "duplicates": len(self.duplicates), "unreadable": len(self.unreadable),
                "too_small": len(self.too_small)}

    def warning(self) -> str | None:
        n = len(self.kept)
        if n >= FEW_IMAGES:
            return None
        return (f"only {n} images kept: fine-tuning on fewer than ~{FEW_IMAGES} overfits quickly (the "
                "discriminator memorises them). Train with augmentation (`--augment ada` or `diffaugment`), "
                "keep --kimg short, and check the snapshots with `masquerade inspect`.")

    def summary(self) -> str:
        c = self.counts()
        return (f"kept {c['kept']}, dropped {c['duplicates']} duplicates, {c['unreadable']} unreadable, "
                f"{c['too_small']} smaller than {self.min_side} px")


def find_photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)


def prepare(photos: str | Path, out: str | Path, size: int = 256, crop: str = "centre",
            near_duplicate_bits: int = 10, min_side: int | None = None) -> Manifest:
    """Read every photo under `photos` (recursively), write `size`x`size` PNGs and `manifest.json`
    into `out`. `near_duplicate_bits`: pHash Hamming distance at or below which two images are one
    (0: exact pixels-alike only; -1: keep near duplicates). `min_side`: shorter side below which a photo
    is dropped rather than upscaled (default `size`)."""
    photos, out = Path(photos), Path(out)
    if crop not in CROPS:
        raise PrepareError(f"--crop must be one of {', '.join(CROPS)}, got {crop!r}")
    if size < 8:
        raise PrepareError(f"--size must be at least 8, got {size}")
    if not photos.is_dir():
        raise PrepareError(f"{photos}: no such folder")
    if out.exists() and any(p.suffix.lower() in PHOTO_SUFFIXES for p in out.iterdir()):
        raise PrepareError(f"{out}: already holds images; prepare into a new or empty folder")
    if out.resolve() == photos.resolve() or photos.resolve() in out.resolve().parents:
        raise PrepareError(f"{out}: the output must be outside the photo folder")
    files = find_photos(photos)
    if not files:
        raise PrepareError(f"{photos}: no photos ({', '.join(sorted(PHOTO_SUFFIXES))}, searched recursively)")
    min_side = size if min_side is None else min_side
    manifest = Manifest(str(photos), size, crop, near_duplicate_bits, min_side)
    out.mkdir(parents=True, exist_ok=True)
    by_digest: dict[str, str] = {}
    hashes: list[tuple[int, str]] = []
    for path in files:
        rel = str(path.relative_to(photos))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in by_digest:
            manifest.duplicates.append({"source": rel, "duplicate_of": by_digest[digest], "kind": "exact",
                                        "distance": 0})
            continue
        by_digest[digest] = rel
        try:
            with Image.open(path) as im:
                im.load()
                image = ImageOps.exif_transpose(im).convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            manifest.unreadable.append({"source": rel, "error": f"{type(e).__name__}: {e}"})
            log.warning("%s: unreadable, skipped (%s)", path, e)
            continue
        if min(image.size) < min_side:
            manifest.too_small.append({"source": rel, "width": image.width, "height": image.height})
            continue
        tile = square(image, crop).resize((size, size), Image.LANCZOS)
        h = phash(tile)
        if near_duplicate_bits >= 0:
            match = min(((hamming(h, other), name) for other, name in hashes), default=None)
            if match is not None and match[0] <= near_duplicate_bits:
                manifest.duplicates.append({"source": rel, "duplicate_of": match[1], "kind": "near",
                                            "distance": match[0]})
                continue
        hashes.append((h, rel))
        name = f"{len(manifest.kept):05d}_{_safe(path.stem)}.png"
        tile.save(out / name)
        manifest.kept.append({"source": rel, "output": name, "phash": f"{h:016x}"})
    (out / "manifest.json").write_text(json.dumps({"counts": manifest.counts(), **asdict(manifest)}, indent=1))
    return manifest


def _safe(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in stem)[:40]
