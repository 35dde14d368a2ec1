"""Procedural "photos" for the fine-tuning tests: a sky-to-ground gradient, a few shapes, grain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def photo(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    arr = (top * (1 - t) + bottom * t).repeat(w, axis=1)  # [H, W, 3]
    im = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        x1, y1 = x0 + int(rng.integers(6, w // 2)), y0 + int(rng.integers(6, h // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    grain = rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(im, dtype=np.float64) + grain, 0, 255).astype(np.uint8))


def photo_folder(folder: Path, count: int, size: tuple[int, int] = (96, 72), start: int = 0) -> list[Path]:
    """`count` distinct photos as JPEG, PNG and WebP in nested folders."""
    paths = []
    for i in range(start, start + count):
        sub = folder / f"roll{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"photo{i:03d}{('.jpg', '.png', '.webp')[i % 3]}"
        photo(i, size).save(path, **({"quality": 92} if path.suffix != ".png" else {}))
        paths.append(path)
    return paths
