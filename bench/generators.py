"""Milliseconds per frame of each generator at batch 1 and 8, eager fp32 against the project's speedups
(engine/generators/speed.py), as ratios within one run on the device at hand.

    .venv/bin/python bench/generators.py [--device auto] [--sizes 256] [--repeats 5] [--no-compile]

Generators: the shipped emoji DCGAN (64 px), and StyleGAN2 (config F widths: channel_base 32768, max
512 channels, 8 mapping layers) and StyleGAN3-T at each size in `--sizes`, with random weights (the
speed of a network does not depend on its weights). Variants: eager fp32 (the reference), bf16
autocast, torch.compile; on CUDA also fp16 and fp16 + compile + CUDA graphs. "err" is the largest
pixel difference from the eager fp32 image (0..1 scale). Compilation time is reported apart, not in
the per-frame figure. On a CPU the defaults are a 64 px CPU-size net (channel_base 4096, at most 128
channels): config F runs at seconds per frame there, StyleGAN3 at tens of seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import generators  # noqa: E402
from engine.generators import importers  # noqa: E402
from engine.generators.speed import Speed, accelerate  # noqa: E402
from engine.pipeline import resolve_device  # noqa: E402

WIDTHS = {"f": (32768, 512), "small": (4096, 128)}  # (channel_base, channel_max): NVlabs config F, a CPU-size net


class OneClass(torch.nn.Module):
    """A class-conditional generator called as g(z): BigGAN with class 207 for every frame."""

    def __init__(self, g, label: int = 207):
        super().__init__()
        self.g, self.z_dim, self.c = g, g.z_dim, torch.nn.functional.one_hot(torch.tensor([label]), g.c_dim).float()

    def forward(self, z):
        return self.g(z, c=self.c.to(z.device), truncation_psi=0.5)


def builders(sizes, widths):
    base, top = WIDTHS[widths]
    # BigGAN-deep 128 at full width (the package's default config, random weights); lightweight-gan 256 with
    # the package's defaults (latent 256, fmap_max 512, attention at 32 px as its README suggests)
    yield "BigGAN-deep 128px", lambda: OneClass(generators.create("biggan"))
    yield "lightweight-gan 256px", lambda: generators.create("lightweight-gan", latent_dim=256, image_size=256,
                                                             attn_res_layers=[32])
    yield "emoji64 DCGAN 64px", lambda: importers.load(ROOT / "assets" / "models" / "emoji64.safetensors").module
    for size in sizes:
        yield f"StyleGAN2 {size}px {widths}", lambda s=size: generators.create(
            "stylegan2", z_dim=512, c_dim=0, w_dim=512, img_resolution=s, img_channels=3,
            mapping_kwargs={"num_layers": 8}, synthesis_kwargs={"channel_base": base, "channel_max": top})
        yield f"StyleGAN3-T {size}px {widths}", lambda s=size: generators.create(
            "stylegan3", z_dim=512, c_dim=0, w_dim=512, img_resolution=s, img_channels=3, channel_base=base,
            channel_max=top)


def variants(device, compile_too: bool):
    yield "eager fp32", Speed("fp32")
    yield "bf16", Speed("bf16")
    if device.type == "cuda":
        yield "fp16", Speed("fp16")
    if compile_too:
        yield "compile fp32", Speed("fp32", compile=True)
        if device.type == "cuda":
            yield "compile fp16", Speed("fp16", compile=True)
            yield "compile fp16 + CUDA graphs", Speed("fp16", compile=True, cuda_graphs=True)


def measure(g, z, repeats, device) -> tuple[float, float, torch.Tensor]:
    """(first call seconds, ms per frame after it, image of the first call)"""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        start = time.perf_counter()
        image = g(z)
        sync()
        first = time.perf_counter() - start
        g(z)  # a second warm-up: CUDA graphs record on the second call
        sync()
        start = time.perf_counter()
        for _ in range(repeats):
            g(z)
        sync()
    return first, (time.perf_counter() - start) / repeats / z.shape[0] * 1000, image


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sizes", default=None, help="StyleGAN sizes, e.g. 256,512,1024 (default: 64 on CPU, "
                                                  "256,512,1024 on CUDA)")
    ap.add_argument("--widths", choices=sorted(WIDTHS), default=None,
                    help="StyleGAN channel widths: f (NVlabs config F; default on CUDA) or small (default on CPU)")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--only", default="", help="run the generators whose label contains this text")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (it takes a minute per net on CPU)")
    ap.add_argument("--variants", default="", help="comma-separated: only the variants whose name contains one of "
                                                   "these (eager fp32, the reference, always runs)")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    sizes = [int(s) for s in (args.sizes or ("256,512,1024" if cuda else "64")).split(",")]
    widths = args.widths or ("f" if cuda else "small")
    batches = [int(b) for b in args.batches.split(",")]
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# generators on {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    print(f"{'generator':22} {'variant':28} {'batch':>5} {'ms/frame':>9} {'x eager':>8} {'err':>8} {'first call':>10}")
    for label, build in builders(sizes, widths):
        if args.only not in label:
            continue
        for batch in batches:
            base_ms, reference = None, None
            for vname, speed in variants(device, not args.no_compile):
                wanted = [v for v in args.variants.split(",") if v]
                if wanted and vname != "eager fp32" and not any(v in vname for v in wanted):
                    continue
                torch.manual_seed(0)
                g = build().to(device).eval().requires_grad_(False)
                z = torch.randn(batch, g.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
                try:
                    accelerate(g, device, speed)
                    first, ms, image = measure(g, z, args.repeats, device)
                except Exception as e:  # noqa: BLE001 -- a variant this device cannot run is reported, not fatal
                    print(f"{label:22} {vname:28} {batch:5d}   failed: {type(e).__name__}: {str(e)[:60]}")
                    continue
                if reference is None:
                    base_ms, reference = ms, image.float()
                err = (image.float() - reference).abs().max().item()
                print(f"{label:22} {vname:28} {batch:5d} {ms:9.2f} {base_ms / ms:8.2f} {err:8.4f} {first:9.1f}s",
                      flush=True)


if __name__ == "__main__":
    main()
