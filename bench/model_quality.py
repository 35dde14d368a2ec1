"""Is one generator sharper and more varied than another? Measured against the training images, not by eye.

    .venv/bin/python bench/model_quality.py data/emoji128 assets/models/emoji64.safetensors \
        training-runs/emoji128-grown-5/generator-002000.safetensors [--samples 1500] [--truncation 0.8]

Every model's samples are brought to the data's size (bicubic, as a plain upscale would) and compared with
the same number of training images, in two feature spaces: pixels at 32 x 32 (colour and layout) and a
randomly initialised, fixed-seed conv net pooled to 4 x 4 (shapes and texture; Naeem et al. 2020 found such
random embeddings usable where no ImageNet network fits the data). Neither was trained on any model's
output, so neither favours one model.

- **coverage** (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models", k = 5):
  the fraction of training images with a sample inside their k-nearest-neighbour ball. Variety: a model that
  draws only some of the data's kinds of picture covers only those.
- **density** (same paper): how many training images' balls a sample falls in, over k, averaged. Fidelity:
  about 1 for samples distributed like the data, lower for pictures that read as nothing.
- **recall / precision** (Kynkäänniemi et al. 2019, k = 5): the older pair, reported beside them.
- **sharpness**: the mean absolute 3 x 3 Laplacian of the luma, as a fraction of the training images' own.
  A soft upscale scores well below 1; ringing or noise above it.
- **distinct**: the median distance from a sample to its nearest other sample, over the data's own median
  (pixel space). Near-duplicate samples (mode collapse) push it towards 0.

Prints one table row per model; the training images themselves are the first row (1.0 everywhere bar noise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.generators import checkpoint  # noqa: E402
from engine.training.gan import load_folder  # noqa: E402

K = 5


class RandomEmbedding(torch.nn.Module):
    """Four stride-2 conv + ReLU stages at fixed seed, then 4 x 4 average pooling, per-channel standardised."""

    def __init__(self, seed: int = 0, width: int = 32):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        chans = [3, width, width * 2, width * 4, width * 4]
        self.weights = [torch.randn(c_out, c_in, 3, 3, generator=gen) * (2 / (9 * c_in)) ** 0.5
                        for c_in, c_out in zip(chans, chans[1:])]

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images * 2 - 1
        for w in self.weights:
            x = F.relu(F.conv2d(x, w, stride=2, padding=1))
        return F.adaptive_avg_pool2d(x, 4).flatten(1)


def embed(images: torch.Tensor, net: RandomEmbedding) -> dict[str, torch.Tensor]:
    pixels = F.interpolate(images, size=(32, 32), mode="area").flatten(1)
    conv = torch.cat([net(chunk) for chunk in images.split(256)])
    return {"pixels": pixels, "conv": conv}


def knn_radius(feats: torch.Tensor, k: int = K) -> torch.Tensor:
    d = torch.cdist(feats, feats)
    return d.kthvalue(k + 1, dim=1).values  # +1: itself at distance 0


def scores(real: torch.Tensor, fake: torch.Tensor, k: int = K) -> dict[str, float]:
    """Density, coverage, precision and recall of `fake` against `real` (rows are feature vectors)."""
    r_real, r_fake = knn_radius(real, k), knn_radius(fake, k)
    d = torch.cdist(real, fake)  # [R, F]
    inside_real = d < r_real[:, None]  # sample f inside real r's ball
    return {
        "coverage": float((d.min(dim=1).values < r_real).float().mean()),
        "density": float(inside_real.float().sum(dim=0).mean() / k),
        "precision": float(inside_real.any(dim=0).float().mean()),
        "recall": float((d < r_fake[None, :]).any(dim=1).float().mean()),
    }


def laplacian_energy(images: torch.Tensor) -> float:
    luma = (images * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1, keepdim=True)
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]])[None, None]
    return float(F.conv2d(luma, kernel).abs().mean())


def distinct(feats: torch.Tensor) -> float:
    d = torch.cdist(feats, feats)
    d.fill_diagonal_(float("inf"))
    return float(d.min(dim=1).values.median())


@torch.inference_mode()
def samples(path: Path, n: int, side: int, truncation: float, seed: int) -> torch.Tensor:
    generator, _ = checkpoint.load(path)
    generator.eval()
    z = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(seed)) * truncation
    images = torch.cat([generator(chunk) for chunk in z.split(64)]).clamp(0, 1)
    if images.shape[-1] != side:
        images = F.interpolate(images, size=(side, side), mode="bicubic", align_corners=False).clamp(0, 1)
    return images


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="the training images' folder")
    ap.add_argument("models", type=Path, nargs="+", help="generator .safetensors files")
    ap.add_argument("--samples", type=int, default=1500)
    ap.add_argument("--truncation", type=float, default=0.8, help="psi, as the default show walks")
    ap.add_argument("--side", type=int, default=128, help="the size every picture is compared at")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    data = load_folder(args.data, args.side).float() / 255
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed))
    real, held = data[pick[:args.samples]], data[pick[args.samples:2 * args.samples]]
    net = RandomEmbedding(args.seed)
    real_f = embed(real, net)
    base_sharp, base_distinct = laplacian_energy(real), distinct(real_f["pixels"])

    print(f"{len(real)} training images of {args.data} vs {args.samples} samples each, psi {args.truncation}, "
          f"compared at {args.side} px, k = {K}")
    head = ["model", "coverage px", "coverage conv", "density px", "density conv", "precision conv",
            "recall conv", "sharpness", "distinct"]
    print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    rows = [("training images (held out)", held)] if len(held) >= args.samples // 2 else []
    rows += [(str(p), samples(p, args.samples, args.side, args.truncation, args.seed)) for p in args.models]
    for name, images in rows:
        f = embed(images, net)
        s_px, s_conv = scores(real_f["pixels"], f["pixels"]), scores(real_f["conv"], f["conv"])
        cells = [name, s_px["coverage"], s_conv["coverage"], s_px["density"], s_conv["density"],
                 s_conv["precision"], s_conv["recall"], laplacian_energy(images) / base_sharp,
                 distinct(f["pixels"]) / base_distinct]
        print("| " + " | ".join(c if isinstance(c, str) else f"{c:.3f}" for c in cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
