"""Reference pictures for colour transfer that the project draws itself (nothing downloaded).

    python -m engine.filters.palettes          # rewrites assets/media/palette-*.png

Each picture is a pure function of its size: the same code gives the same pixels (see
tests/test_colour.py, which redraws the shipped file and compares).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

MEDIA = Path(__file__).resolve().parents[2] / "assets" / "media"


def _ramp(t: np.ndarray, stops: list[tuple[float, tuple[int, int, int]]]) -> np.ndarray:
    """Colours at positions t (any shape, 0..1) interpolated between (position, rgb) stops -> [..., 3]."""
    positions = [p for p, _ in stops]
    return np.stack([np.interp(t, positions, [c[i] for _, c in stops]) for i in range(3)], -1)


def sunset(width: int = 512, height: int = 320) -> Image.Image:
    """A sun low over the sea: indigo to magenta to orange sky, a glowing disc, a rippled reflection
    and dark hills; warm and saturated, with deep shadows."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / width, y / height
    horizon = 0.62
    sky = _ramp(v / horizon, [(0.0, (28, 14, 68)), (0.35, (110, 32, 110)), (0.65, (222, 74, 88)),
                              (0.85, (250, 146, 62)), (1.0, (255, 206, 110))])
    sun_x, sun_y, radius = 0.62, horizon - 0.08, 0.07
    d = np.hypot((u - sun_x) * width / height, v - sun_y)
    glow = np.exp(-(d / 0.22) ** 2)[..., None]
    sky = sky + glow * (np.array([255, 190, 90]) - sky) * 0.6
    sky = np.where((d < radius)[..., None], np.array([255, 236, 170.0]), sky)
    # the sea: the sky's colours darkened and mirrored, with a rippled column of sunlight
    depth = np.clip((v - horizon) / (1 - horizon), 0, 1)
    mirrored = _ramp(np.clip(1 - depth, 0, 1), [(0.0, (20, 10, 50)), (0.6, (70, 24, 84)), (1.0, (180, 70, 80))])
    ripple = 0.5 + 0.5 * np.sin(y * 1.7 + np.sin(x * 0.09) * 2.5)
    column = np.exp(-((u - sun_x) / (0.04 + 0.12 * depth)) ** 2) * ripple * (1 - 0.6 * depth)
    sea = mirrored + column[..., None] * (np.array([255, 180, 90]) - mirrored)
    picture = np.where((v < horizon)[..., None], sky, sea)
    # hills on the left, a dark silhouette against the sky
    ridge = horizon - 0.16 * np.exp(-((u - 0.12) / 0.16) ** 2) - 0.09 * np.exp(-((u - 0.34) / 0.1) ** 2)
    picture = np.where(((v > ridge) & (v < horizon + 0.02))[..., None], np.array([24, 10, 36.0]), picture)
    return Image.fromarray(np.clip(np.round(picture), 0, 255).astype(np.uint8))


PALETTES = {"palette-sunset.png": sunset}


def main() -> int:
    MEDIA.mkdir(parents=True, exist_ok=True)
    for name, draw in PALETTES.items():
        draw().save(MEDIA / name)
        print(f"wrote {MEDIA / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
