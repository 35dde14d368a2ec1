"""The `masquerade` command: run, render, models, data, train.

User errors (a bad show, a missing model, a malformed size) print one line and exit with status 2;
a traceback means a bug in Masquerade, not in the user's files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from engine.errors import MasqueradeError
from engine.show import PROJECT_ROOT, ShowError, parse_size

log = logging.getLogger("masquerade")


class UsageError(MasqueradeError):
    pass


def _size(text: str):
    try:
        return parse_size(text)
    except ShowError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def cmd_run(args) -> None:
    from engine import show as shows
    from engine.loop import LiveOptions, run_live
    from engine.window import display_available

    show = shows.load(args.show)
    headless = args.headless
    if not headless and not display_available():
        log.warning("no display found (DISPLAY is unset): rendering headless instead. "
                    "To see the window, run on a desktop or under `xvfb-run -a`.")
        headless = True
    if (args.frames is not None or args.out) and not headless:
        raise UsageError("--frames and --out belong to --headless runs; use `masquerade render` for files")
    opts = LiveOptions(device=args.device, size=args.size, fullscreen=args.fullscreen, display=args.display,
                       stats=args.stats, headless=headless, frames=args.frames, out=args.out,
                       osc_port=args.osc_port, record=args.record, heartbeat=args.heartbeat)
    result = run_live(show, opts)
    log.info("showed %d frames in %.1f s", result.frames, result.seconds)
    if headless and not args.out:
        log.info("for a video: masquerade render %s -o piece.mp4 --seconds 20", args.show)


def cmd_render(args) -> None:
    from engine import show as shows
    from engine.loop import render

    show = shows.load(args.show)
    if args.workers or args.ray:  # frames drawn by Ray tasks, joined in order: the same file
        from engine.distributed import render_distributed

        render_distributed(show, args.output, seconds=args.seconds, size=args.size, fps=args.fps,
                           device=args.device, progress=not args.quiet, replay=args.replay,
                           workers=args.workers or 2, address=args.ray)
        return
    render(show, args.output, seconds=args.seconds, size=args.size, fps=args.fps, device=args.device,
           progress=not args.quiet, replay=args.replay)


def cmd_models(args) -> None:
    from engine.generators import checkpoint

    if args.action == "list":
        folder = PROJECT_ROOT / "assets" / "models"
        for path in sorted(folder.glob("*.safetensors")):
            card = checkpoint.read_card(path)
            cfg = card.config
            res = cfg.get("resolution", "?")
            print(f"{path.relative_to(PROJECT_ROOT)}  {card.architecture}  {res}x{res}  "
                  f"{card.parameters:,} parameters  {card.provenance.get('dataset', '')}")
        return
    if not args.path:
        raise UsageError(f"models {args.action} needs a model file: masquerade models {args.action} PATH")
    if args.action == "info":  # any supported format, read through the converters, nothing written
        from engine.generators import importers

        print(importers.describe(importers.load(args.path)))
    elif args.action == "import":
        from engine.generators import importers

        if not args.output:
            raise UsageError("models import needs an output file: masquerade models import IN -o OUT.safetensors")
        loaded = importers.import_model(args.path, args.output)
        res, card = loaded.module.resolution, loaded.card
        print(f"wrote {args.output}  {card.architecture}  {res}x{res}  from {card.provenance['source_format']}")
    else:  # sheet
        from engine.contact_sheet import contact_sheet

        generator, _ = checkpoint.load(args.path)
        out = args.output or args.path.with_suffix(".png")
        contact_sheet(generator, seed=args.seed).save(out)
        print(f"wrote {out}")


def cmd_data(args) -> None:
    from engine.training import emoji

    count = emoji.build(args.output, size=args.size)
    print(f"wrote {count} images to {args.output}")


def cmd_train(args) -> None:
    from engine.training.gan import TrainConfig, Trainer

    cfg = TrainConfig(data=str(args.data), out=str(args.out), resolution=args.resolution, z_dim=args.z_dim,
                      g_channels=args.channels, d_channels=args.channels, batch=args.batch, steps=args.steps,
                      snapshot_every=args.snapshot_every, seed=args.seed, threads=args.threads,
                      dataset_name=args.dataset_name, licence=args.licence)
    if not Path(cfg.data).is_dir():
        raise UsageError(f"--data {cfg.data}: no such folder")
    path = Trainer(cfg).run()
    print(f"latest snapshot: {path}")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (what is wrong, and where to read more)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="masquerade", description="Real-time latent-space walks from GANs.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="play a show in a window (or headless)")
    run.add_argument("show", type=Path)
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    run.add_argument("--size", type=_size, help="window size, WIDTHxHEIGHT (default: the show's)")
    run.add_argument("--fullscreen", action="store_true")
    run.add_argument("--display", type=int, default=0, help="which display (0 is the first)")
    run.add_argument("--stats", action="store_true", help="per-stage time per frame on screen and in the log")
    run.add_argument("--headless", action="store_true", help="render offscreen (EGL), no window")
    run.add_argument("--frames", type=_positive_int, help="headless: stop after N frames (default 10 s)")
    run.add_argument("--out", type=Path, help="headless: write frames to a folder of PNGs (or .mp4)")
    run.add_argument("--osc-port", type=int, help="UDP port for OSC (default: the show's [osc] port, 9000; "
                                                   "0: any free port)")
    run.add_argument("--record", type=Path, help="save every control event with its show time (JSON lines)")
    run.add_argument("--heartbeat", type=Path, help="write a JSON heartbeat (frames, fps, show time) to this file "
                                                     "about once a second, for the kiosk supervisor")
    run.set_defaults(func=cmd_run)

    ren = sub.add_parser("render", help="render a show to a video file or PNG folder, frame-exact")
    ren.add_argument("show", type=Path)
    ren.add_argument("-o", "--output", type=Path, required=True, help="piece.mp4, or a folder for PNGs")
    ren.add_argument("--seconds", type=_positive_float, default=10.0)
    ren.add_argument("--fps", type=_positive_float, help="default: the show's")
    ren.add_argument("--size", type=_size, help="WIDTHxHEIGHT (default: the show's)")
    ren.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ren.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ren.add_argument("--replay", type=Path, help="a set recorded with `run --record`: re-render that performance")
    ren.add_argument("--workers", type=_positive_int, help="render on Ray with N tasks at a time (pip install "
                                                          "'masquerade[distributed]'); the same frames")
    ren.add_argument("--ray", metavar="ADDRESS", help="with --workers: join a running Ray cluster at ADDRESS "
                                                     "(`ray start --head` prints it; auto: the one on this machine); "
                                                     "default: a local Ray started for this render")
    ren.set_defaults(func=cmd_render)

    mod = sub.add_parser("models", help="describe and import model files")
    mod.add_argument("action", choices=["list", "info", "sheet", "import"],
                     help="list: the shipped models; info PATH: what a file holds (ours, or an NVlabs .pkl, "
                          "rosinality .pt, DCGAN .pth); sheet PATH: a contact sheet PNG; "
                          "import PATH -o OUT.safetensors: convert a foreign file into a Masquerade model file")
    mod.add_argument("path", nargs="?", type=Path)
    mod.add_argument("-o", "--output", type=Path, help="sheet: where to write the PNG; import: the .safetensors")
    mod.add_argument("--seed", type=int, default=0, help="sheet: which latents")
    mod.set_defaults(func=cmd_models)

    data = sub.add_parser("data", help="build a training set")
    data.add_argument("source", choices=["emoji"], help="emoji: Noto Color Emoji glyphs (fonts-noto-color-emoji)")
    data.add_argument("-o", "--output", type=Path, required=True)
    data.add_argument("--size", type=_positive_int, default=64)
    data.set_defaults(func=cmd_data)

    tr = sub.add_parser("train", help="train a DCGAN on a folder of images")
    tr.add_argument("--data", type=Path, required=True)
    tr.add_argument("--out", type=Path, required=True, help="run folder: snapshots, sample grids, state.pt")
    tr.add_argument("--resolution", type=_positive_int, default=64)
    tr.add_argument("--z-dim", type=_positive_int, default=128)
    tr.add_argument("--channels", type=_positive_int, default=32, help="base width of G and D")
    tr.add_argument("--batch", type=_positive_int, default=64)
    tr.add_argument("--steps", type=_positive_int, default=10_000)
    tr.add_argument("--snapshot-every", type=_positive_int, default=500)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--threads", type=int, default=0)
    tr.add_argument("--dataset-name", default="")
    tr.add_argument("--licence", default="")
    tr.set_defaults(func=cmd_train)

    from engine.latent import bookmarks_command

    bookmarks_command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        args.func(args)
    except (MasqueradeError, FileNotFoundError) as e:
        print(f"masquerade: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
