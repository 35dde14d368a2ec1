"""Frames per second of an offline render: one process --no-overlap, overlapped at batch 1 and at batch 4, and Ray
with 1 and 2 workers, in one run.

    .venv/bin/python bench/render.py [--show shows/default.toml] [--size 1920x1080] [--seconds 2] [--out mp4|png]
                                     [--device auto] [--batch 4] [--workers 1 2 | --workers (no Ray)]

"overlapped" is `masquerade render` (engine/offline.py: generation, GL compositing with asynchronous read-back and
encoding at once), at `--batch 1` and at `--batch N` (N frames of show time through the generator and filters at
once, the default 4); "--no-overlap" draws and writes one frame after the other at batch 1, the frames before issue
19; ratios are to it, and the batch's own ratio (batch N over batch 1, both overlapped) is printed apart.

Each figure is the whole render (chunks drawn, gathered in order, written by the driver: H.264 for mp4,
PNG files for png) over the frame count. The Ray session is started once before timing (its start-up,
printed apart, is paid once per render command); each Ray render pays its tasks' own model load and GL
context per chunk. Needs Ray: pip install 'masquerade[distributed]'.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import show as shows  # noqa: E402
from engine.distributed import render_distributed  # noqa: E402
from engine.loop import render  # noqa: E402
from engine.show import parse_size  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--show", default="shows/default.toml")
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--out", choices=["mp4", "png"], default="mp4")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch", type=int, default=4, help="the batched run's batch (the other is 1)")
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="Ray runs (none: --workers alone)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    show, size = shows.load(args.show), parse_size(args.size)
    frames = round(args.seconds * args.fps)

    ray_start = None
    if args.workers:
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray_start = time.perf_counter() - started
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        def target(name):
            return Path(tmp) / (f"{name}.mp4" if args.out == "mp4" else name)

        render(show, target("warm-up"), 3 / args.fps, size, args.fps, device=args.device, progress=False)  # caches

        runs = (("--no-overlap", False, 1), ("overlapped, batch 1", True, 1),
                (f"overlapped, batch {args.batch}", True, args.batch))
        for i, (name, overlap, batch) in enumerate(runs):
            started = time.perf_counter()
            render(show, target(f"run{i}"), args.seconds, size, args.fps, device=args.device, progress=False,
                   overlap=overlap, batch=batch)
            results[name] = frames / (time.perf_counter() - started)
        for n in args.workers:
            started = time.perf_counter()
            render_distributed(show, target(f"ray{n}"), args.seconds, size, args.fps, device=args.device,
                               progress=False, workers=n)
            results[f"Ray, {n} worker{'s' if n > 1 else ''}"] = frames / (time.perf_counter() - started)
    if args.workers:
        ray.shutdown()
    base = results["--no-overlap"]
    ray_note = f", Ray start-up {ray_start:.1f} s, not counted" if ray_start is not None else ""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{args.show} at {size[0]}x{size[1]}, {frames} frames to {args.out}, device {args.device}, "
          f"{os.cpu_count()} CPU cores, load average {load}{ray_note}")
    for name, fps in results.items():
        print(f"  {name:<21} {fps:6.2f} frames/s   x{fps / base:.2f}")
    batched = results[f"overlapped, batch {args.batch}"] / results["overlapped, batch 1"]
    print(f"  batch {args.batch} over batch 1 (both overlapped): x{batched:.2f}")


if __name__ == "__main__":
    main()
