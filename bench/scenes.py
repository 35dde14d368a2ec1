"""The frame rate while the next scenes' models load in the background (engine/scenes.py ScenePlayer, live).

Plays scene 1 (the emoji GAN at 64 px) as fast as it draws, as the live producer thread does, while the loader
thread builds three more scenes (the same GAN with the x4 super-resolution and the stained-glass style network,
and a StyleGAN2), then keeps playing as long again with nothing loading. Prints frames per second during the
load and after it, and the longest gap between two frames.

    OMP_NUM_THREADS=1 .venv/bin/python bench/scenes.py [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = f'''
[[scene]]
name = "glass{{n}}"
duration = "until cued"
walk = {{{{ seed = {{n}} }}}}
[[scene.filters]]
kind = "superres"
[[scene.filters]]
kind = "style"
path = "{ROOT}/assets/models/style-stained-glass.safetensors"
[[scene]]
name = "stylegan{{n}}"
duration = "until cued"
model = {{{{ path = "{ROOT}/tests/data/stylegan2/uncond_skip32.safetensors" }}}}
'''
SHOW = f'''
[model]
path = "{ROOT}/assets/models/emoji64.safetensors"
[output]
work_size = 256
[[scene]]
name = "plain"
duration = "until cued"
{{scenes}}'''


def main() -> None:
    from engine import scenes
    from engine import show as shows
    from engine.frame import Tick

    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pairs", type=int, default=8, help="pairs of scenes to load (super-res + style, StyleGAN2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(SHOW.replace("{scenes}", "".join(HEAVY.format(n=n) for n in range(1, args.pairs + 1))))
        show = shows.load(path)
        warm = scenes.ScenePlayer(show, args.device, _controls(show))  # first-call costs, the allocator, file cache
        for i in range(30):
            warm.generate(Tick(i, i / 30))
        del warm
        start = time.perf_counter()
        player = scenes.ScenePlayer(show, args.device, _controls(show), background=True)
        first_built = time.perf_counter() - start
        stamps, i = [], 0
        loading_from = time.perf_counter()
        while player._loader.is_alive():
            player.generate(Tick(i, i / 30))
            stamps.append(time.perf_counter())
            i += 1
        load_seconds = time.perf_counter() - loading_from
        during = list(stamps)
        stamps.clear()
        until = time.perf_counter() + max(load_seconds, 2.0)
        while time.perf_counter() < until:
            player.generate(Tick(i, i / 30))
            stamps.append(time.perf_counter())
            i += 1
        after = stamps

    def rate(ts):
        return (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 else float("nan")

    def worst(ts):
        return max((b - a for a, b in zip(ts, ts[1:])), default=float("nan")) * 1000

    loads = sum(s for n, s in player.loads[1:])
    print(f"device {player.device}; scene 1 built in {first_built:.2f} s; {len(player.loads) - 1} scenes loaded "
          f"in the background, {loads:.2f} s of loading")
    median = 1000 * statistics.median(b - a for a, b in zip(during, during[1:]))
    print(f"while loading ({load_seconds:.2f} s): {rate(during):.1f} fps, {len(during)} frames, "
          f"longest gap {worst(during):.0f} ms, median {median:.1f} ms")
    print(f"after loading ({after[-1] - after[0]:.2f} s): {rate(after):.1f} fps, longest gap {worst(after):.0f} ms")


def _controls(show):
    from engine import timeline
    from engine.pipeline import make_bus

    return timeline.Controls(show, make_bus(show))


if __name__ == "__main__":
    main()
