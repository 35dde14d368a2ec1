"""The loss plot written with every snapshot, drawn with Pillow (no plotting library to install):
each curve is the raw per-step value, faint, under its running mean."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLOURS = {"loss_D": (220, 80, 60), "loss_G": (60, 130, 220), "ada_p": (40, 160, 90)}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < 2:
        return values
    kernel = np.ones(min(window, len(values))) / min(window, len(values))
    padded = np.concatenate([np.full(len(kernel) - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def loss_plot(log: list[dict], keys: tuple[str, ...] = ("loss_D", "loss_G"), size: tuple[int, int] = (720, 360),
              x_key: str = "kimg") -> Image.Image:
    """log: one dict per step (the trainer's `log`) -> an RGB image with one curve per key."""
    w, h = size
    left, right, top, bottom = 56, 16, 28, 36
    im = Image.new("RGB", size, (250, 250, 250))
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    rows = [r for r in log if all(k in r and np.isfinite(r[k]) for k in keys)]
    if len(rows) < 2:
        draw.text((left, h // 2), "not enough steps to plot yet", fill=(0, 0, 0), font=font)
        return im
    xs = np.array([r.get(x_key, r["step"]) for r in rows], dtype=np.float64)
    series = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in keys}
    window = max(1, len(rows) // 50)
    lo = min(float(np.percentile(v, 1)) for v in series.values())
    hi = max(float(np.percentile(v, 99)) for v in series.values())
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    x0, x1 = float(xs[0]), float(xs[-1]) if xs[-1] > xs[0] else float(xs[0]) + 1

    def px(x, y):
        return (left + (x - x0) / (x1 - x0) * (w - left - right),
                top + (1 - (np.clip(y, lo, hi) - lo) / (hi - lo)) * (h - top - bottom))

    draw.rectangle([left, top, w - right, h - bottom], outline=(120, 120, 120))
    for frac in (0, 0.5, 1):
        y = lo + frac * (hi - lo)
        _, py = px(x0, y)
        draw.line([left - 4, py, left, py], fill=(120, 120, 120))
        draw.text((4, py - 6), f"{y:.3g}", fill=(60, 60, 60), font=font)
    draw.text((left, h - bottom + 6), f"{x0:.3g}", fill=(60, 60, 60), font=font)
    draw.text((w - right - 60, h - bottom + 6), f"{x1:.3g} {x_key}", fill=(60, 60, 60), font=font)
    for i, (key, values) in enumerate(series.items()):
        colour = COLOURS.get(key, (100, 100, 100))
        faint = tuple(int(c + (250 - c) * 0.7) for c in colour)
        draw.line([px(x, y) for x, y in zip(xs, values)], fill=faint, width=1)
        draw.line([px(x, y) for x, y in zip(xs, smooth(values, window))], fill=colour, width=2)
        draw.text((left + 8 + 90 * i, 8), key, fill=colour, font=font)
    return im
