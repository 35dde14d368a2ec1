"""A contact sheet of a model: random samples above, slerp walks between pairs below, so one PNG
shows both variety (is it mode-collapsed?) and smoothness (does a walk morph or jump?)."""

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
