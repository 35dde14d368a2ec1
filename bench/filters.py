"""Milliseconds per frame of each filter at several input sizes, on the device at hand.

    .venv/bin/python bench/filters.py [--device auto] [--sizes 256,512,1080] [--repeats 3]

Filters: super-resolution with each public weight file found in ../shared/fixtures (Real-ESRGAN compact
x4 and x2, SRGAN x4), tiled at 256 px so 1080p input fits in memory, and DeepDream on the shipped
discriminator (per-frame and feedback mode, the latter as shows/dream-feedback.toml runs it) and on
a GoogLeNet with random weights (the classic network's shape and cost); style transfer with the shipped
stained-glass style and, like CycleGAN, on a published-size network of random weights. "64" is the default show's
frame (the live case); "1080" means a 1920x1080 input. On a CPU the default sizes stop at 512: a x4
network on 1080p input there takes minutes a frame, which is a fact worth knowing but not worth waiting for.
The sizes are work sizes (`[output] work_size`, engine/frame_path.py): what a filter after super-resolution sees.

    .venv/bin/python bench/filters.py --flicker [--show shows/default.toml] [--seconds 12]

measures temporal stability instead: the mean absolute frame-to-frame change of the shipped x4 super-resolution's
output over a show's walk, as a ratio to that of a bicubic x4 of the same 64 px frames (1.0: SR flickers no more
than bicubic; the goal is under 1.10).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.filters.colour import ColourTransfer, Grade  # noqa: E402
from engine.filters.cyclegan import CycleGAN, ResnetGenerator  # noqa: E402
from engine.filters.deepdream import DeepDream  # noqa: E402
from engine.filters.dream_nets import GoogLeNet  # noqa: E402
from engine.filters.pix2pix import Pix2Pix, UnetGenerator  # noqa: E402
from engine.filters.style import StyleTransfer, TransformerNet  # noqa: E402
from engine.filters.superres import SuperRes  # noqa: E402
from engine.pipeline import resolve_device  # noqa: E402

WEIGHTS = ROOT.parent / "shared" / "fixtures" / "weights"


def filters():
    names = ("realesr-animevideov3.pth", "RealESRGANv2-animevideo-xsx2.pth", "srgan-leftthomas-netG_epoch_4_100.pth")
    for name in names:
        if (WEIGHTS / name).is_file():
            yield f"superres {name}", lambda n=name: SuperRes(WEIGHTS / n, tile=256, overlap=18)
    yield "superres (shipped sr-emoji-x4, compact 32 x 6)", lambda: SuperRes(tile=256, overlap=8)
    yield "colour-transfer (shipped sunset palette)", lambda: ColourTransfer()
    yield "grade (exposure, lift, gamma, contrast, saturation)", \
        lambda: Grade(exposure=0.3, lift=0.05, gamma=1.2, contrast=1.2, saturation=1.4)
    yield "deepdream (emoji discriminator, 8 steps x 2 octaves)", lambda: DeepDream()
    yield "deepdream feedback (discriminator, 3 steps x 2 octaves)", \
        lambda: DeepDream(mode="feedback", steps=3, octaves=2)
    yield "deepdream feedback (GoogLeNet inception4c, 3 x 2)", lambda: googlenet_dream(mode="feedback", steps=3)
    shipped_style = ROOT / "assets" / "models" / "style-stained-glass.safetensors"
    if shipped_style.is_file():
        yield "style (shipped stained-glass, width 16)", lambda: StyleTransfer(shipped_style, stabilise=0.6)
    yield "style (examples' TransformerNet, random weights)", lambda: random_weights(StyleTransfer, TransformerNet())
    yield "cyclegan (ResnetGenerator ngf 64, 9 blocks, random)", lambda: random_weights(CycleGAN, ResnetGenerator())
    yield "pix2pix (UnetGenerator unet_256, ngf 64, batch norm, random)", \
        lambda: random_weights(Pix2Pix, UnetGenerator())


def googlenet_dream(**options) -> DeepDream:
    """DeepDream on a GoogLeNet of random weights, saved to a temporary file as a user's would be."""
    import tempfile

    path = Path(tempfile.mkdtemp()) / "googlenet-random.pth"
    torch.save(GoogLeNet().state_dict(), path)
    try:
        return DeepDream(path=path, **options)
    finally:
        path.unlink()


def random_weights(filter_class, net: torch.nn.Module):
    """A style, CycleGAN or pix2pix filter on a full-size network of random weights (the published files' size)."""
    import tempfile

    path = Path(tempfile.mkdtemp()) / "random.pth"
    torch.save(net.state_dict(), path)
    try:
        return filter_class(path)
    finally:
        path.unlink()


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


@torch.inference_mode()
def flicker(show_path: Path, seconds: float, device) -> tuple[float, float, str]:
    """(SR change, bicubic change): mean |frame t - frame t-1| over the show's frames at its fps, for the show's
    super-resolution (its first `superres` row; the shipped x4 when it has none) and for a bicubic upscale of the
    same generator frames by the same factor (the show's other filters left out)."""
    import dataclasses

    import torch.nn.functional as F

    from engine import show as shows
    from engine.frame import Tick
    from engine.pipeline import Pipeline

    show = shows.load(show_path)
    unbound = [b for b in show.bindings if not b.target.startswith("filter.")]  # no filters: nothing to steer
    bare = Pipeline(dataclasses.replace(show, filters=[], bindings=unbound), str(device))  # the generator's frames
    row = next((f for f in show.filters if f.kind == "superres"), None)  # the show's SR; else the shipped x4
    path = row.args.get("path") if row is not None else None
    sr = (SuperRes(path=str(show.resolve(str(path)))) if path else SuperRes()).to(device).eval()
    fps = show.output.fps
    changes = {"sr": [], "bicubic": []}
    previous = None
    for i in range(round(seconds * fps)):
        frame = bare.generate(Tick(i, i / fps)).image  # [1, 3, R, R]
        now = {"sr": sr(frame), "bicubic": F.interpolate(frame, scale_factor=sr.scale, mode="bicubic",
                                                        align_corners=False).clamp(0, 1)}  # [1, 3, sR, sR]
        if previous is not None:
            for k in now:
                changes[k].append((now[k] - previous[k]).abs().mean().item())
        previous = now
    name = f"{Path(path).stem if path else 'shipped'} x{sr.scale}"
    return sum(changes["sr"]) / len(changes["sr"]), sum(changes["bicubic"]) / len(changes["bicubic"]), name


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="auto")
    p.add_argument("--only", default="", help="only the filters whose label contains this text")
    p.add_argument("--flicker", action="store_true", help="SR temporal stability against bicubic (see above)")
    p.add_argument("--show", type=Path, default=ROOT / "shows" / "default.toml", help="--flicker: whose walk")
    p.add_argument("--seconds", type=float, default=12.0, help="--flicker: seconds of show")
    p.add_argument("--sizes", default=None,
                   help="comma-separated: 64 (the default show's frames), 256, 512, 1080 (default on CPU: 64,256,512)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    device = resolve_device(args.device)
    sizes = args.sizes or ("64,256,512" if device.type == "cpu" else "64,256,512,1080")
    shapes = {"64": (64, 64), "256": (256, 256), "512": (512, 512), "1080": (1080, 1920)}
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    if args.flicker:
        sr, bicubic, name = flicker(args.show, args.seconds, device)
        print(f"mean |frame - previous| over {args.seconds:g} s of {args.show.name}: SR {name} {sr:.5f}, "
              f"bicubic {bicubic:.5f}, ratio {sr / bicubic:.3f} (goal < 1.10)")
        return
    for label, build in filters():
        if args.only not in label:
            continue
        module = build().to(device).eval()
        row = []
        for size in sizes.split(","):
            h, w = shapes[size]
            image = torch.rand(1, 3, h, w, device=device)
            row.append(f"{size}: {time_ms(module, image, args.repeats, device):9.1f} ms")
        print(f"{label:<60} " + "   ".join(row))


if __name__ == "__main__":
    main()
