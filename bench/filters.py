"""Milliseconds per frame of each filter at several input sizes, on the device at hand.

    .venv/bin/python bench/filters.py [--device auto] [--sizes 256,512,1080] [--repeats 3]

Filters: super-resolution with each public weight file found in ../shared/fixtures (Real-ESRGAN compact
x4 and x2, SRGAN x4), tiled at 256 px so 1080p input fits in memory, and DeepDream on the shipped
discriminator. "64" is the default show's frame (the live case); "1080" means a 1920x1080 input. On a
CPU the default sizes stop at 512: a x4 network on
1080p input there takes minutes a frame, which is a fact worth knowing but not worth waiting for.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.filters.deepdream import DeepDream  # noqa: E402
from engine.filters.superres import SuperRes  # noqa: E402
from engine.pipeline import resolve_device  # noqa: E402

WEIGHTS = ROOT.parent / "shared" / "fixtures" / "weights"


def filters():
    names = ("realesr-animevideov3.pth", "RealESRGANv2-animevideo-xsx2.pth", "srgan-leftthomas-netG_epoch_4_100.pth")
    for name in names:
        if (WEIGHTS / name).is_file():
            yield f"superres {name}", lambda n=name: SuperRes(WEIGHTS / n, tile=256, overlap=18)
    yield "deepdream (emoji discriminator, 8 steps x 2 octaves)", lambda: DeepDream()


def time_ms(module, image, repeats: int, device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        module(image)  # warm up
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            module(image)
        sync()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="auto")
    p.add_argument("--sizes", default=None,
                   help="comma-separated: 64 (the default show's frames), 256, 512, 1080 (default on CPU: 64,256,512)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    device = resolve_device(args.device)
    sizes = args.sizes or ("64,256,512" if device.type == "cpu" else "64,256,512,1080")
    shapes = {"64": (64, 64), "256": (256, 256), "512": (512, 512), "1080": (1080, 1920)}
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    for label, build in filters():
        module = build().to(device).eval()
        row = []
        for size in sizes.split(","):
            h, w = shapes[size]
            image = torch.rand(1, 3, h, w, device=device)
            row.append(f"{size}: {time_ms(module, image, args.repeats, device):9.1f} ms")
        print(f"{label:<60} " + "   ".join(row))


if __name__ == "__main__":
    main()
