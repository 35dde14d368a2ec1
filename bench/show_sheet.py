"""Stills of a show as a visitor sees them: render it at 1920x1080 and lay some frames out in one PNG.

    .venv/bin/python bench/show_sheet.py [shows/default.toml] [-o docs/default-show-1080p.png] [--seconds 12]

Six frames spread over the render, shrunk to 640 px wide, then the centre of the first at its own pixels
(engine/contact_sheet.py `stills`). The render is the real one (`masquerade render`), so the sheet shows the
whole frame path: generator, super-resolution, filters, compositor.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import show as shows  # noqa: E402
from engine.contact_sheet import stills  # noqa: E402
from engine.loop import render  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("show", nargs="?", type=Path, default=ROOT / "shows" / "default.toml")
    p.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "default-show-1080p.png")
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--count", type=int, default=6)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "frames"
        total = render(shows.load(args.show), out, args.seconds, size=(1920, 1080), device=args.device, progress=False)
        picks = [round(i * (total - 1) / max(1, args.count - 1)) for i in range(args.count)]
        frames = [Image.open(sorted(out.glob("*.png"))[i]) for i in picks]
        stills(frames).save(args.out, optimize=True)
    print(f"{args.out}: frames {picks} of {total} at 1920x1080")


if __name__ == "__main__":
    main()
