"""A contact sheet of a model: random samples above, slerp walks between pairs below, so one PNG
shows both variety (is it mode-collapsed?) and smoothness (does a walk morph or jump?). `stills` lays out
rendered frames of a show: shrunk in a grid above, the centre of the first at its own pixels below."""

from __future__ import annotations

import torch
from PIL import Image

from engine.training.gan import sample_grid
from engine.walks.keyframes import slerp


@torch.inference_mode()
def contact_sheet(generator, seed: int = 0, columns: int = 8, sample_rows: int = 4, walk_rows: int = 3,
                  truncation: float = 0.8, scale: int = 2) -> Image.Image:
    gen = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    z = torch.randn(columns * sample_rows, generator.z_dim, generator=gen) * truncation
    walks = []
    for _ in range(walk_rows):
        a, b = torch.randn(2, generator.z_dim, generator=gen) * truncation
        walks += [slerp(a, b, i / (columns - 1)) for i in range(columns)]
    latents = torch.cat([z, torch.stack(walks)]).to(device)
    images = torch.cat([generator(chunk) for chunk in latents.split(16)]).cpu()
    sheet = sample_grid(images, columns)
    return sheet.resize((sheet.width * scale, sheet.height * scale), Image.NEAREST)


def contact_sheet_sized(generator, size: tuple[int, int], seed: int = 0, walk_rows: int = 3,
                        truncation: float = 0.8) -> Image.Image:
    """`contact_sheet` filling a picture of `size` (e.g. 1920x1080, a screen's worth) at the model's own pixels:
    as many columns and rows of samples as fit, the last `walk_rows` rows walks, centred on black."""
    res = generator.resolution
    columns, rows = size[0] // res, size[1] // res
    if columns < 2 or rows <= walk_rows:
        raise ValueError(f"a {size[0]}x{size[1]} sheet holds too few {res} px tiles: give a larger --size")
    grid = contact_sheet(generator, seed, columns, rows - walk_rows, walk_rows, truncation, scale=1)
    canvas = Image.new("RGB", size)
    canvas.paste(grid, ((size[0] - grid.width) // 2, (size[1] - grid.height) // 2))
    return canvas


def stills(frames: list[Image.Image], columns: int = 3, width: int = 640) -> Image.Image:
    """Rendered frames (one size) -> one picture: each shrunk to `width` in a grid of `columns`, then a strip
    of the first frame's centre at 1:1, `columns * width` wide, so the output's real detail shows."""
    w, h = frames[0].size
    tile = (width, round(h * width / w))
    rows = -(-len(frames) // columns)
    strip = min(h, tile[1] * 2)
    sheet = Image.new("RGB", (columns * width, rows * tile[1] + strip))
    for i, frame in enumerate(frames):
        sheet.paste(frame.convert("RGB").resize(tile, Image.LANCZOS), ((i % columns) * width, (i // columns) * tile[1]))
    cx, cy = (w - columns * width) // 2, (h - strip) // 2
    sheet.paste(frames[0].convert("RGB").crop((cx, cy, cx + columns * width, cy + strip)), (0, rows * tile[1]))
    return sheet
