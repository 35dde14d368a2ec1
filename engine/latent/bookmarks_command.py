"""`masquerade bookmarks`: the bookmarks file of a show, from the shell.

    masquerade bookmarks list  marks.json --model M
    masquerade bookmarks add   marks.json --model M NAME --seed 12     (the latent of a seed)
    masquerade bookmarks mix   marks.json --model M NAME "smile - frown + calm"
    masquerade bookmarks rename marks.json --model M slot3 dawn
    masquerade bookmarks still marks.json --model M NAME -o dawn.png --show my.toml [--size 1920x1080]

Slots saved live over OSC (`/masq/bookmark/save N`) appear as `slotN`; rename them to use them in
expressions and cues. A still is what the show presents: the bookmark through the show's frame path and
compositor at its output size (`--show`; without it, a show of the model alone). Expressions are latent
arithmetic (Radford et al. 2016, §6.3), read by the small parser in bookmarks.py, never evaluated as Python.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: every `masquerade` command builds this parser, most need no torch
    import torch


def add_parser(sub) -> None:
    p = sub.add_parser("bookmarks", help="list, add, mix (latent arithmetic), rename and render bookmarks")
    p.add_argument("action", choices=["list", "add", "mix", "rename", "still"])
    p.add_argument("file", type=Path, help="the bookmarks file (JSON; created by add/mix when missing)")
    p.add_argument("args", nargs="*", help="add NAME | mix NAME EXPRESSION | rename OLD NEW | still NAME")
    p.add_argument("--model", type=Path, required=True, help="the model the bookmarks belong to")
    p.add_argument("--seed", type=int, default=0, help="add: the seed whose latent is bookmarked")
    p.add_argument("-o", "--output", type=Path, help="still: the PNG to write")
    p.add_argument("--show", type=Path, help="still: the show it is rendered by (its filters, output size, fit; "
                   "default: a show of --model alone)")
    p.add_argument("--size", type=_size, help="still: WIDTHxHEIGHT (default: the show's output size)")
    p.add_argument("--truncation", type=float, help="still: psi (default: the show's walk.truncation)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="still: where the model runs")
    p.set_defaults(func=run)


def _size(text: str):
    from engine.cli import _size

    return _size(text)


def _want(args, count: int, usage: str) -> list[str]:
    from engine.cli import UsageError

    if len(args.args) != count:
        raise UsageError(f"bookmarks {args.action}: expected {usage}, got {' '.join(args.args) or 'nothing'}")
    return args.args


def run(args: argparse.Namespace) -> None:
    from engine.cli import UsageError
    from engine.generators import importers
    from engine.latent.bookmarks import Bookmarks

    if not args.model.is_file():
        raise UsageError(f"--model {args.model}: no such model file")
    loaded = importers.load(args.model)
    g = loaded.module.eval()
    w_dim = g.w_dim if hasattr(g, "mapping") else None
    marks = Bookmarks.open(args.file, args.model, g.z_dim, w_dim)
    if args.action == "list":
        _want(args, 0, "no more arguments")
        for name in marks.names():
            z = marks[name].z
            print(f"{name:20} |z| {z.norm():6.2f}  {'z+w' if marks[name].w is not None else 'z'}")
        if not marks.names():
            print(f"{args.file}: no bookmarks yet")
        return
    if args.action == "still":
        (name,) = _want(args, 1, "NAME")
        if args.output is None:
            raise UsageError("bookmarks still: give -o FILE.png")
        still(args, loaded, marks[name].z[None])
        print(f"wrote {args.output}")
        return
    if args.action == "add":
        (name,) = _want(args, 1, "NAME")
        import torch

        z = torch.randn(1, g.z_dim, generator=torch.Generator().manual_seed(args.seed))
        w = g.mapping(z, None)[0, 0] if w_dim is not None and not getattr(g, "c_dim", 0) else None
        marks.add(name, z[0], w)
    elif args.action == "mix":
        name, expression = _want(args, 2, "NAME EXPRESSION")
        mixed = marks.combine(expression)
        marks.add(name, mixed.z, mixed.w)
    else:  # rename
        old, new = _want(args, 2, "OLD NEW")
        mark = marks[old]
        marks.add(new, mark.z, mark.w)
        marks.remove(old)
    marks.save()
    print(f"{args.file}: {', '.join(marks.names())}")


def still(args: argparse.Namespace, loaded, z: torch.Tensor) -> None:
    """Latent `z` [1, z_dim] as the show presents it: through its frame path (super-resolution, filters at
    the work size) and the compositor (fit, upscale, background) at --size or its output size, headless;
    no overlay."""
    import dataclasses

    from PIL import Image

    from engine import show as shows
    from engine.cli import UsageError
    from engine.compositor import headless_context
    from engine.frame import Tick
    from engine.loop import make_compositor
    from engine.pipeline import Pipeline

    show = shows.load(args.show) if args.show else shows.parse({"model": {"path": str(args.model.resolve())}})
    if show.model_path.resolve() != args.model.resolve():
        raise UsageError(f"--show {args.show}: its model is {show.model_path}, not --model {args.model}")
    if args.truncation is not None:
        show = dataclasses.replace(show, walk=dataclasses.replace(show.walk, truncation=args.truncation))
    pipeline = Pipeline(show, args.device, loaded=loaded)
    frame = pipeline.generate(Tick(0, 0.0), z)
    ctx = headless_context()
    try:
        compositor = make_compositor(ctx, show, args.size or show.output.size, pipeline)
        compositor.draw(frame, frame, 1.0)
        Image.fromarray(compositor.read()).save(args.output)
    finally:
        ctx.release()
