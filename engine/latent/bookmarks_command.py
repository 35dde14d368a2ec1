"""`masquerade bookmarks`: the bookmarks file of a show, from the shell.

    masquerade bookmarks list  marks.json --model M
    masquerade bookmarks add   marks.json --model M NAME --seed 12     (the latent of a seed)
    masquerade bookmarks mix   marks.json --model M NAME "smile - frown + calm"
    masquerade bookmarks rename marks.json --model M slot3 dawn
    masquerade bookmarks still marks.json --model M NAME -o dawn.png

Slots saved live over OSC (`/masq/bookmark/save N`) appear as `slotN`; rename them to use them in
expressions and cues. Expressions are latent arithmetic (Radford et al. 2016, §6.3), read by the small
parser in bookmarks.py, never evaluated as Python.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def add_parser(sub) -> None:
    p = sub.add_parser("bookmarks", help="list, add, mix (latent arithmetic), rename and render bookmarks")
    p.add_argument("action", choices=["list", "add", "mix", "rename", "still"])
    p.add_argument("file", type=Path, help="the bookmarks file (JSON; created by add/mix when missing)")
    p.add_argument("args", nargs="*", help="add NAME | mix NAME EXPRESSION | rename OLD NEW | still NAME")
    p.add_argument("--model", type=Path, required=True, help="the model the bookmarks belong to")
    p.add_argument("--seed", type=int, default=0, help="add: the seed whose latent is bookmarked")
    p.add_argument("-o", "--output", type=Path, help="still: the PNG to write")
    p.add_argument("--truncation", type=float, default=1.0, help="still: psi")
    p.set_defaults(func=run)


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
    g = importers.load(args.model).module.eval()
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
        from PIL import Image

        from engine.frame import to_uint8_hwc

        with torch.inference_mode():
            image = g(marks[name].z[None], truncation_psi=args.truncation)
        Image.fromarray(to_uint8_hwc(image)).save(args.output)
        print(f"wrote {args.output}")
        return
    if args.action == "add":
        (name,) = _want(args, 1, "NAME")
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
