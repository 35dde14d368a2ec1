"""The shipped super-resolution model on default-GAN frames: a contact sheet against the plain
upscalers, and its time per frame on this machine.

    .venv/bin/python bench/sr_sheet.py [--model assets/models/sr-emoji-x4.safetensors [--model ANOTHER]] \
        [--generator assets/models/emoji64.safetensors] [-o docs/sr-emoji-x4.png] [--frames 6] [--seed 0]

Columns: the generator's 64 px frame (nearest, so its pixels show), bicubic, Lanczos (what the compositor
does without a filter), then each model. Each 256 px; the last rows enlarge the busiest 16 px square of the
first frames x4 more (nearest). Prints milliseconds per frame at 64² and 256² input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.filters.superres import SHIPPED, SuperRes  # noqa: E402
from engine.generators import checkpoint  # noqa: E402


def to_pil(image: torch.Tensor) -> Image.Image:
    """[3, H, W] in [0, 1] -> PIL RGB."""
    return Image.fromarray((image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def sheet(frames: torch.Tensor, models: dict[str, SuperRes], details: int = 2) -> Image.Image:
    """One row per frame, then `details` rows of the first frames' centres enlarged x4 more."""
    labels = ("64 px frame", "bicubic", "Lanczos", *models)
    side, head = 256, 22
    out = Image.new("RGB", (side * len(labels), head + side * (len(frames) + details)), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for c, label in enumerate(labels):
        draw.text((c * side + 6, 5), label, fill=(0, 0, 0))
    with torch.inference_mode():
        ours = [sr(frames) for sr in models.values()]
    bicubic = F.interpolate(frames, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    for r, frame in enumerate(frames):
        small = to_pil(frame)
        row = [small.resize((side, side), Image.NEAREST), to_pil(bicubic[r]),
               small.resize((side, side), Image.LANCZOS), *(to_pil(o[r]) for o in ours)]
        for c, im in enumerate(row):
            out.paste(im, (c * side, head + r * side))
            if r < details:  # the busiest 64 x 64 of each, at 4x again: pixels, not impressions
                y, x = busiest(frame)
                detail = im.crop((4 * x, 4 * y, 4 * x + 64, 4 * y + 64)).resize((side, side), Image.NEAREST)
                out.paste(detail, (c * side, head + (len(frames) + r) * side))
    return out


def busiest(frame: torch.Tensor, window: int = 16) -> tuple[int, int]:
    """(y, x) of the `window`-pixel square of frame [3, H, W] with the most edges."""
    grey = frame.mean(0)
    edges = grey.diff(dim=0)[:, :-1].abs() + grey.diff(dim=1)[:-1].abs()  # [H-1, W-1]
    energy = F.avg_pool2d(edges[None, None], window, stride=1)[0, 0]
    y, x = divmod(int(energy.argmax()), energy.shape[1])
    return y, x


def ms_per_frame(sr: SuperRes, side: int, repeats: int = 10) -> float:
    x = torch.rand(1, 3, side, side)
    with torch.inference_mode():
        sr(x)
        start = time.perf_counter()
        for _ in range(repeats):
            sr(x)
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", type=Path, action="append", help="an SR model file (repeat to compare; default: "
                   "the shipped one)")
    p.add_argument("--generator", type=Path, default=ROOT / "assets" / "models" / "emoji64.safetensors")
    p.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "sr-emoji-x4.png")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--truncation", type=float, default=0.8, help="as the default show")
    args = p.parse_args()
    generator, _ = checkpoint.load(args.generator)
    z = torch.randn(args.frames, generator.z_dim, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        frames = generator(z, truncation_psi=args.truncation)
    models = {path.stem: SuperRes(path) for path in args.model or [SHIPPED]}
    sheet(frames, models).save(args.output)
    print(f"wrote {args.output}")
    for name, sr in models.items():
        for threads in sorted({1, torch.get_num_threads()}):
            torch.set_num_threads(threads)
            times = "   ".join(f"{s}²: {ms_per_frame(sr, s):7.1f} ms" for s in (64, 256))
            print(f"{name}, {threads} thread(s): {times}")
    print(f"numpy {np.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
