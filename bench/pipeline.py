"""Frames per second of the bare generator and of the whole frame path, in one run, and their ratio.

    .venv/bin/python bench/pipeline.py [--show shows/default.toml] [--device auto] [--frames 300]

"bare generator": the model's forward pass alone, batch 1, on the chosen device.
"frame path": the live loop headless in lockstep (walk, generator, quantise on the device, upload
through a pixel buffer, two-pass Lanczos composite, GL finish), timed by the loop itself so model
loading and context creation are left out. Lockstep means nothing overlaps: this is the cost of a
frame, the sum of its stages (printed below it). The goal (issue 2) is a frame path within 10% of
the bare generator; the ratio says how close.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import show as shows  # noqa: E402
from engine.loop import LiveOptions, run_live  # noqa: E402
from engine.pipeline import Pipeline  # noqa: E402


def bare_generator_fps(pipeline: Pipeline, frames: int) -> float:
    z = torch.randn(1, pipeline.generator.z_dim, device=pipeline.device)
    sync = torch.cuda.synchronize if pipeline.device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(10):
            pipeline.generator(z)
        sync()
        start = time.perf_counter()
        for _ in range(frames):
            pipeline.generator(z)
        sync()
    return frames / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--show", default="shows/default.toml")
    p.add_argument("--device", default="auto")
    p.add_argument("--frames", type=int, default=300)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    show = shows.load(args.show)
    pipeline = Pipeline(show, args.device)
    bare = bare_generator_fps(pipeline, args.frames)
    print(f"device {pipeline.device}, model {show.model_path.name} ({pipeline.generator.resolution}px), "
          f"torch threads {torch.get_num_threads()}\nframe path {pipeline.path.describe()}")
    print(f"bare generator              {bare:8.1f} fps")
    for size in (pipeline.work_size, (512, 512), tuple(show.output.size), (1920, 1080)):
        run = run_live(show, LiveOptions(device=args.device, headless=True, frames=args.frames, size=size))
        fps = run.frames / run.seconds
        stages = "  ".join(f"{k} {v:.2f}" for k, v in run.stage_ms.items())
        print(f"frame path {size[0]:>4}x{size[1]:<4}      {fps:8.1f} fps   ratio {fps / bare:.3f}   ms: {stages}")


if __name__ == "__main__":
    main()
