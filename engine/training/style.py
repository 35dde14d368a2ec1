"""Train a style for the `style` filter: a narrow TransformerNet (engine/filters/style.py) fitted with
the perceptual losses of Johnson, Alahi and Fei-Fei 2016 (arXiv:1603.08155). Never imported live.

    .venv/bin/python -m engine.training.style --name stained-glass --minutes 20

A style from any picture, at the default show's 256 px: `masquerade train-style --image my.jpg -o my.safetensors`
(`engine/training/style_image.py`, which reuses `gram` and `total_variation` from here).

Honest substitutions, because Masquerade downloads nothing:
- Loss network: not VGG-16 but the shipped emoji discriminator's features
  (`assets/models/emoji64-discriminator.safetensors`, `features(x)`: four LeakyReLU activations at
  1/2 ... 1/16 resolution). It was trained on the content we style (emoji GAN frames), so its features
  describe exactly those pictures; it is a far smaller and less general network than VGG, so the
  styles it can transfer are bolder and simpler (colour fields, outlines, cell textures) than the
  painterly ones of the published models.
- The style loss also matches the Gram matrix of the RGB pixels themselves (a 3x3 colour statistic):
  the discriminator, trained on dark-background emoji, is only loosely tied to palette.
- Style image: made here from a seed (`stained_glass`: Voronoi cells of saturated glass colours with
  dark lead lines); content images: frames of the default GAN (`assets/models/emoji64.safetensors`)
  at random latents and truncations, the pictures the filter sees in the default show.

Loss = content_weight * MSE(features_c(y), features_c(x)) / mean(features_c(x)^2)   (c: `content_layer`)
     + style_weight * sum_l MSE(gram(features_l(y)), G_l) / mean(G_l^2)            (l: every layer)
     + rgb_weight * MSE(gram(y), G_rgb) / mean(G_rgb^2) + tv_weight * total variation(y),
with G the style image's Gram matrices, gram(F) = F F^T / (C H W) as in the PyTorch examples; each
term is divided by its target's size so that the weights are comparable across layers.
The result is saved as a Masquerade model file (`engine.generators.checkpoint.save`, architecture
"style-transformer"), which the `style` filter reads like any TransformerNet `.safetensors`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.filters.style import TransformerNet
from engine.generators import checkpoint

ROOT = Path(__file__).resolve().parent.parent.parent
MODELS = ROOT / "assets" / "models"
GLASS = [(200, 30, 40), (240, 170, 20), (30, 90, 200), (20, 150, 90), (130, 40, 170), (250, 110, 30),
         (60, 180, 220), (230, 220, 120)]


def stained_glass(size: int = 96, cells: int = 60, seed: int = 7, lead: float = 1.6) -> torch.Tensor:
    """[1, 3, size, size] in [0, 1]: Voronoi cells filled with glass colours, each lit brighter at its
    centre, separated by dark lead lines `lead` pixels wide (distance to the nearest cell border)."""
    rng = np.random.RandomState(seed)
    centres = rng.uniform(0, size, (cells, 2))
    colours = np.array(GLASS, dtype=np.float64)[rng.randint(0, len(GLASS), cells)] / 255
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    d = np.hypot(yy[..., None] - centres[:, 0], xx[..., None] - centres[:, 1])  # [size, size, cells]
    order = np.argsort(d, axis=-1)
    d1 = np.take_along_axis(d, order[..., :1], -1)[..., 0]
    d2 = np.take_along_axis(d, order[..., 1:2], -1)[..., 0]
    border = (d2 - d1) / 2  # distance to the bisector between the two nearest centres
    glow = 1.15 - 0.5 * np.clip(d1 / (size / math.sqrt(cells)), 0, 1)
    image = colours[order[..., 0]] * glow[..., None]
    image = image * np.clip((border - lead / 2) / 0.75, 0, 1)[..., None] + 0.06 * (border < lead / 2)[..., None]
    return torch.from_numpy(image.clip(0, 1).astype(np.float32)).permute(2, 0, 1)[None]


STYLES = {"stained-glass": stained_glass}


def gram(f: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, C], normalised by C H W (the PyTorch examples' `gram_matrix`)."""
    b, c, h, w = f.shape
    f = f.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def total_variation(y: torch.Tensor) -> torch.Tensor:
    return (y[..., 1:, :] - y[..., :-1, :]).abs().mean() + (y[..., :, 1:] - y[..., :, :-1]).abs().mean()


def train(name: str = "stained-glass", width: int = 16, blocks: int = 5, steps: int = 100_000,
          minutes: float = 20.0, batch: int = 4, lr: float = 2e-3, content_weight: float = 1.0,
          style_weight: float = 1.0, rgb_weight: float = 1.0, tv_weight: float = 0.02, content_layer: int = 1,
          jitter: int = 3, seed: int = 0, out: Path | None = None, log_every: int = 50) -> dict:
    """Train until `steps` or `minutes` (whichever comes first); save; return the provenance."""
    torch.manual_seed(seed)
    generator, _ = checkpoint.load(MODELS / "emoji64.safetensors")
    critic, _ = checkpoint.load(MODELS / "emoji64-discriminator.safetensors")
    features = critic.features
    style = STYLES[name]()
    with torch.no_grad():
        style_grams = [gram(f) for f in features(style)] + [gram(style)]  # each [1, C, C]
        scales = [g.pow(2).mean() for g in style_grams]  # each term relative to its own size
    net = TransformerNet(width=width, blocks=blocks)
    opt = torch.optim.Adam(net.parameters(), lr)
    start, step, history = time.monotonic(), 0, []
    while step < steps and time.monotonic() - start < minutes * 60:
        with torch.no_grad():  # content: GAN frames at random latents and truncations, random flips
            z = torch.randn(batch, generator.z_dim)
            psi = torch.empty(batch, 1).uniform_(0.5, 1.0)
            x = generator(z * psi)
            x = torch.where(torch.rand(batch, 1, 1, 1) < 0.5, x.flip(-1), x)  # [B, 3, 64, 64] in 0..1
            target = features(x)[content_layer]
            content_scale = target.pow(2).mean()
        y = net(x * 255) / 255  # [B, 3, 64, 64], nominally 0..1
        # the loss network sees both at one random phase of its stride-2 grid (0..3 px, wrapped), so a
        # texture locked to that grid is not a cheap way to match its Gram matrices
        shift = tuple(int(v) for v in torch.randint(0, jitter + 1, (2,)))
        if any(shift):
            with torch.no_grad():
                target = features(x.roll(shift, dims=(2, 3)))[content_layer]
        fy = features(y.roll(shift, dims=(2, 3)))
        content = F.mse_loss(fy[content_layer], target) / content_scale
        style_terms = [F.mse_loss(gram(f), g.expand(batch, -1, -1)) / n for f, g, n in zip(fy, style_grams, scales)]
        rgb = F.mse_loss(gram(y), style_grams[-1].expand(batch, -1, -1)) / scales[-1]
        loss = (content_weight * content + style_weight * sum(style_terms) + rgb_weight * rgb
                + tv_weight * total_variation(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % log_every == 0:
            row = dict(step=step, seconds=round(time.monotonic() - start), loss=loss.item(), content=content.item(),
                       style=sum(style_terms).item(), rgb=rgb.item())
            history.append(row)
            print(json.dumps(row), flush=True)
        if step == int(0.75 * steps) or (step % 100 == 0 and time.monotonic() - start > 0.75 * minutes * 60):
            for group in opt.param_groups:  # a lower rate for the last quarter
                group["lr"] = lr / 4
    seconds = time.monotonic() - start
    net.eval()
    provenance = dict(
        style=f"{name} (procedural, engine/training/style.py:{STYLES[name].__name__}, seed 7)",
        content="frames of assets/models/emoji64.safetensors, z ~ N(0, I) scaled by psi in [0.5, 1], random flips",
        loss_network="assets/models/emoji64-discriminator.safetensors features (all 4 layers) + RGB Gram",
        loss=dict(content_layer=content_layer, content_weight=content_weight, style_weight=style_weight,
                  rgb_weight=rgb_weight, tv_weight=tv_weight, jitter=jitter),
        steps=step, batch=batch, lr=lr, seconds=round(seconds), final=history[-1] if history else {},
        licence="MIT (made by the Masquerade project from its own models and a procedural image)",
        command="python -m engine.training.style " + " ".join(sys.argv[1:]),
    )
    out = out or MODELS / f"style-{name}.safetensors"
    checkpoint.save(net, "style-transformer", out, provenance)
    return provenance


def contact_sheet(model: Path, out: Path, name: str = "stained-glass", count: int = 6, seed: int = 2026,
                  zoom: int = 2) -> None:
    """A PNG: the style image, then `count` GAN frames (top), styled (middle) and half blended (bottom)."""
    from PIL import Image

    from engine.filters.style import StyleTransfer

    generator, _ = checkpoint.load(MODELS / "emoji64.safetensors")
    style = StyleTransfer(model)
    with torch.no_grad():
        x = generator(torch.randn(count, generator.z_dim, generator=torch.Generator().manual_seed(seed)) * 0.8)
    rows = [x, style(x), style(x, blend=0.5)]  # each [count, 3, 64, 64]
    r = x.shape[-1]
    swatch = F.interpolate(STYLES[name](), size=(r, r), mode="area")[0]
    blank = torch.zeros(3, r, r)
    grid = torch.cat([torch.cat([swatch if i == 0 else blank, *row], dim=-1) for i, row in enumerate(rows)], dim=-2)
    pixels = (grid.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    image = Image.fromarray(pixels)
    image.resize((image.width * zoom, image.height * zoom), Image.NEAREST).save(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", default="stained-glass", choices=sorted(STYLES))
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--style-weight", type=float, default=1.0)
    p.add_argument("--rgb-weight", type=float, default=1.0)
    p.add_argument("--content-weight", type=float, default=1.0)
    p.add_argument("--tv-weight", type=float, default=0.02)
    p.add_argument("--jitter", type=int, default=3, help="random shift (px) of the loss network's input")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    p.add_argument("--sheet", type=Path, default=None, help="also write a before/after contact sheet (PNG)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    provenance = train(args.name, args.width, args.blocks, args.steps, args.minutes, args.batch, args.lr,
                       args.content_weight, args.style_weight, args.rgb_weight, args.tv_weight,
                       jitter=args.jitter, out=args.out)
    print(json.dumps(provenance, indent=2))
    if args.sheet:
        contact_sheet(args.out or MODELS / f"style-{args.name}.safetensors", args.sheet, args.name)


if __name__ == "__main__":
    main()
