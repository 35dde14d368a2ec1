"""Check a show file the way the engine will play it, in its own interpreter (it imports torch).

`python -m installation.kiosk.validate [--memory-mb N] [--seconds S] SHOW`: reads the show, builds its model
and its filters on the CPU (never the GPU the live engine holds) and draws one frame (the model's own
resolution, through every filter), then exits 0; or prints the reason on one line (file, key, what is
wrong) and exits 2. The process limits itself before it imports anything heavy: at most N MB of address
space (a model whose config asks for more fails to allocate, and says so) and S seconds of CPU time; the
supervisor also kills it after its wall-clock timeout. The supervisor runs this before it plays an edit.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys


def limit(memory_mb: float | None, seconds: float | None) -> None:
    if memory_mb:
        size = int(memory_mb * 2**20)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))
    if seconds:
        cpu = int(seconds) + 5  # a backstop: the supervisor's wall-clock timeout comes first
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))


def one_line(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def check(path: str, memory_mb: float | None) -> str | None:
    """None when `path` plays, else why not (one line)."""
    from engine.errors import MasqueradeError
    from engine.show import load

    try:
        show = load(path)
    except MasqueradeError as e:
        return one_line(e)
    if not show.model_path.is_file():
        return f"{path}: model.path: {show.model_path}: no such model file"
    try:
        import torch

        from engine.frame import Tick
        from engine.pipeline import Pipeline

        torch.set_num_threads(1)  # the live engine is using the machine: validate beside it, not against it
        pipeline = Pipeline(show, "cpu")
        frame = pipeline.generate(Tick(0, 0.0))
        if not bool(torch.isfinite(frame.image).all()):
            return f"{path}: model {show.model_path.name}: its first frame is not finite (NaN or inf): a corrupt model?"
    except MemoryError:
        return f"{path}: model {show.model_path.name}: building it needs more than {memory_mb:g} MB of memory"
    except Exception as e:  # noqa: BLE001 - any failure to build or draw means the show would not play
        message = str(e)
        if memory_mb and ("can't allocate memory" in message or "not enough memory" in message):
            return f"{path}: model {show.model_path.name}: building it needs more than {memory_mb:g} MB of memory"
        return one_line(f"{path}: model {show.model_path.name}: {type(e).__name__}: {message}")
    return None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m installation.kiosk.validate")
    p.add_argument("show")
    p.add_argument("--memory-mb", type=float, help="address-space limit of this process, in MB")
    p.add_argument("--seconds", type=float, help="CPU-time limit of this process (a backstop)")
    args = p.parse_args(argv)
    limit(args.memory_mb, args.seconds)
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # validation never touches the GPU
    why = check(args.show, args.memory_mb)
    if why is not None:
        print(why)
        return 2
    print(f"ok: {args.show}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
