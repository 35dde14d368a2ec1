"""Frames per second of the bare generator and of the whole frame path, in one run, and their ratio.

    .venv/bin/python bench/pipeline.py [--show shows/default.toml] [--device auto] [--frames 300]

"bare generator": the model's forward pass alone, batch 1, on the chosen device.
"frame path": what every live frame costs: walk, generator, quantise, upload, Lanczos composite to
the output size (headless, lockstep, so nothing overlaps), at the output size and at 512x512.
The goal (issue 2) is a frame path within 10% of the bare generator; the ratio says how close.
"""

from __future__ import annotations

import argparse
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
    with torch.inference_mode():
        for _ in range(10):
            pipeline.generator(z)
        if pipeline.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(frames):
            pipeline.generator(z)
        if pipeline.device.type == "cuda":
            torch.cuda.synchronize()
    return frames / (time.perf_counter() - start)


def frame_path_fps(show, device: str, size, frames: int) -> float:
    run_live(show, LiveOptions(device=device, headless=True, frames=10, size=size))  # warm up
    start = time.perf_counter()
    run_live(show, LiveOptions(device=device, headless=True, frames=frames, size=size))
    return frames / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--show", default="shows/default.toml")
    p.add_argument("--device", default="auto")
    p.add_argument("--frames", type=int, default=300)
    args = p.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    show = shows.load(args.show)
    pipeline = Pipeline(show, args.device)
    bare = bare_generator_fps(pipeline, args.frames)
    print(f"device {pipeline.device}, model {show.model_path.name} ({pipeline.resolution}px), "
          f"torch threads {torch.get_num_threads()}")
    print(f"bare generator            {bare:8.1f} fps")
    for size in (tuple(show.output.size), (512, 512)):
        fps = frame_path_fps(show, args.device, size, args.frames)
        print(f"frame path {size[0]}x{size[1]:<10} {fps:8.1f} fps   ratio {fps / bare:.3f}")


if __name__ == "__main__":
    main()
