"""Frame upload: the host path against CUDA-OpenGL interop (engine/frame_texture.py), frames per second and pixels,
in one run.

    .venv/bin/python bench/frame_upload.py [--show shows/default.toml] [--size 1920x1080] [--frames 120]
                                           [--device auto]

Each path runs the live loop's stages headless in lockstep on an EGL context: generate (the show's pipeline, frames
quantised on the device; host: copied to the host, interop: left on the GPU), upload + composite to the output
size, and the GL finished (what a window's flip waits for). Ratios are to the host path. Then the same ticks are
drawn by both and the composited pixels compared: they must be equal (exit 1 when not). Where interop cannot run
(no CUDA, no cuda-bindings, the GL context on another GPU) the line says why and only the host path is timed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from engine import frame_texture  # noqa: E402
from engine import show as shows  # noqa: E402
from engine.compositor import Compositor, headless_context  # noqa: E402
from engine.frame import Tick  # noqa: E402
from engine.pipeline import Pipeline  # noqa: E402
from engine.show import parse_size  # noqa: E402

CHECKED = 4  # ticks whose composited pixels are compared between the paths


def run(show, device, ctx, size, mode: str, frames: int, fps: float):
    """(frames per second over `frames` ticks after a warm-up, the composited pixels of the first CHECKED ticks);
    None when `mode` is "interop" and it is not available (the reason printed)."""
    pipeline = Pipeline(show, device)
    work = pipeline.work_size
    if mode == "host":
        upload = frame_texture.HostUpload(ctx, work)
    else:
        upload = frame_texture.choose(ctx, work, pipeline.device, log_it=False)
        if not isinstance(upload, frame_texture.CudaInterop):
            upload.release()
            print(f"  interop: not available here ({frame_texture.interop_blocker(pipeline.device) or 'refused'})")
            return None
    pipeline.frames_on_device = upload.on_device
    compositor = Compositor(ctx, size, work, fit=show.output.fit, upscale=show.output.upscale,
                            background=show.output.background, upload=upload)
    try:
        pixels = []
        for i in range(CHECKED):
            frame = pipeline.generate(Tick(i, i / fps))
            compositor.draw(frame, frame, 1.0)
            pixels.append(compositor.read().copy())
        for i in range(3):  # warm-up
            frame = pipeline.generate(Tick(i, i / fps))
            compositor.draw(frame, frame, 1.0)
        ctx.finish()
        started = time.perf_counter()
        for i in range(frames):
            frame = pipeline.generate(Tick(i, i / fps))
            compositor.draw(frame, frame, 1.0)
            ctx.finish()
        return frames / (time.perf_counter() - started), pixels
    finally:
        compositor.release()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--show", default="shows/default.toml")
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    show, size = shows.load(args.show), parse_size(args.size)
    ctx = headless_context()
    try:
        renderer = ctx.info.get("GL_RENDERER", "?")
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"{args.show} at {size[0]}x{size[1]}, {args.frames} frames, device {args.device}, GL {renderer}, "
              f"{os.cpu_count()} CPU cores, load average {load}")
        host = run(show, args.device, ctx, size, "host", args.frames, show.output.fps)
        print(f"  host upload      {host[0]:7.2f} frames/s   x1.00")
        interop = run(show, args.device, ctx, size, "interop", args.frames, show.output.fps)
        if interop is None:
            return 0
        print(f"  CUDA-GL interop  {interop[0]:7.2f} frames/s   x{interop[0] / host[0]:.2f}")
        same = [np.array_equal(a, b) for a, b in zip(host[1], interop[1], strict=True)]
        print(f"  pixels: interop {'equals' if all(same) else 'DIFFERS FROM'} host on {sum(same)} of {len(same)} "
              "frames compared")
        return 0 if all(same) else 1
    finally:
        ctx.release()


if __name__ == "__main__":
    sys.exit(main())
