"""The `masquerade` command: run, render, models, data, train, train-sr, train-style, inspect.

User errors (a bad show, a missing model, a malformed size) print one line and exit with status 2;
a traceback means a bug in Masquerade, not in the user's files.
"""

from __future__ import annotations

import argparse
import logging
import os
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


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _sink(text: str):
    from engine import sinks

    try:
        return sinks.parse_spec(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _even_for_video(show, args, outputs) -> None:
    """H.264 (yuv420p) needs an even size: a video output at an odd --size or output.size is refused here,
    before anything is drawn, naming where the size came from (run and render alike)."""
    from engine.sinks.video import check_size, even_size

    if not outputs:
        return
    if args.size is not None:
        where, size, other = "--size", args.size, ""
    else:
        where, size, other = f"{args.show}: output.size", tuple(show.output.size), " (or an even output.size)"
    advice = (f"use --size {'x'.join(map(str, even_size(size)))}{other} for {', '.join(map(str, outputs))}, "
              "or write PNGs to a folder")
    try:
        check_size(size, where, advice)
    except ValueError as e:
        raise UsageError(str(e)) from None


class _StopOnSignals:
    """SIGINT and SIGTERM end a render between frames, so its file is closed cleanly (a second one ends it
    at once). `signum`: the first signal received."""

    def __init__(self):
        import threading

        self.event, self.signum = threading.Event(), None

    def _handle(self, signum, frame):
        if self.event.is_set():
            raise KeyboardInterrupt
        self.signum = signum
        self.event.set()

    def __enter__(self):
        import signal

        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        import signal

        for s, handler in self._old.items():
            signal.signal(s, handler)


def cmd_run(args) -> None:
    from engine import show as shows
    from engine import sinks
    from engine.loop import LiveOptions, run_live
    from engine.window import display_available

    show = shows.load(args.show)
    videos = [args.out] if args.out and sinks.is_video(args.out) else []
    videos += [row.get("path") for kind, row in args.sink or () if kind == "video" and not args.fullscreen]
    _even_for_video(show, args, videos)
    headless = args.headless
    if not headless and not display_available():
        log.warning("no display found (DISPLAY is unset): rendering headless instead. "
                    "To see the window, run on a desktop or under `xvfb-run -a`.")
        headless = True
    if (args.frames is not None or args.out) and not headless:
        raise UsageError("--frames and --out belong to --headless runs; use `masquerade render` for files")
    opts = LiveOptions(device=args.device, size=args.size, fullscreen=args.fullscreen, display=args.display,
                       stats=args.stats, headless=headless, frames=args.frames, out=args.out,
                       osc_port=args.osc_port, record=args.record, heartbeat=args.heartbeat,
                       start_at=args.start_at, cue=args.cue, sinks=tuple(args.sink or ()), control=args.control)
    result = run_live(show, opts)
    log.info("showed %d frames in %.1f s", result.frames, result.seconds)
    out = result.sinks.get(f"--out {args.out}") if args.out else None
    if out is not None and out.error:  # the file asked for was not written: not a success
        raise UsageError(f"--out {args.out}: {out.error}")
    if headless and not args.out:
        log.info("for a video: masquerade render %s -o piece.mp4 --seconds 20", args.show)


def cmd_render(args) -> None:
    import signal

    from engine import show as shows
    from engine import sinks
    from engine.loop import RenderInterrupted, render

    show = shows.load(args.show)
    _even_for_video(show, args, [args.output] if sinks.is_video(args.output) else [])
    if args.seconds is None:  # the whole piece: to its last scene's end or its last timed cue's
        from engine.loop import length

        args.seconds = length(show)
    if args.workers or args.ray:  # frames drawn by Ray tasks, joined in order: the same file
        from engine.distributed import render_distributed

        if show.scenes or any(c.at is not None for c in show.cues):
            raise UsageError("--workers: scenes and timed cues are drawn in one process (each frame depends on "
                             "the scene changes before it); render this show without --workers")
    with _StopOnSignals() as signals:
        try:
            if args.workers or args.ray:
                render_distributed(show, args.output, seconds=args.seconds, size=args.size, fps=args.fps,
                                   device=args.device, progress=not args.quiet, replay=args.replay,
                                   workers=args.workers or 2, address=args.ray, stop=signals.event)
            else:
                render(show, args.output, seconds=args.seconds, size=args.size, fps=args.fps, device=args.device,
                       progress=not args.quiet, replay=args.replay, stop=signals.event,
                       overlap=not args.no_overlap, batch=args.batch)
        except RenderInterrupted as e:
            e.exit_status = 128 + (signals.signum or signal.SIGINT)  # 130 for SIGINT, 143 for SIGTERM
            raise


def cmd_models(args) -> None:
    from engine.generators import checkpoint

    if args.action == "list":
        folder = PROJECT_ROOT / "assets" / "models"
        for path in sorted(folder.glob("*.safetensors")):
            card = checkpoint.read_card(path)
            cfg = card.config
            size = (f"{cfg['resolution']}x{cfg['resolution']}" if "resolution" in cfg else  # a generator or D
                    f"x{cfg['scale']}" if "scale" in cfg else "any size")  # super-resolution; a style filter
            print(f"{path.relative_to(PROJECT_ROOT)}  {card.architecture}  {size}  "
                  f"{card.parameters:,} parameters  {card.provenance.get('dataset', '')}")
        return
    if not args.path:
        raise UsageError(f"models {args.action} needs a model file: masquerade models {args.action} PATH")
    if args.action == "info":  # any supported format, read through the converters, nothing written
        from engine.generators import importers

        other = importers.describe_non_generator(args.path)  # a filter network or a discriminator of ours
        print(other if other is not None else importers.describe(importers.load(args.path)))
    elif args.action == "import":
        from engine.generators import importers

        if not args.output:
            raise UsageError("models import needs an output file: masquerade models import IN -o OUT.safetensors")
        loaded = importers.import_model(args.path, args.output)
        res, card = loaded.module.resolution, loaded.card
        print(f"wrote {args.output}  {card.architecture}  {res}x{res}  from {card.provenance['source_format']}")
    else:  # sheet
        from engine.contact_sheet import contact_sheet, contact_sheet_sized

        generator, _ = checkpoint.load(args.path)
        out = args.output or args.path.with_suffix(".png")
        if args.size:
            try:
                sheet = contact_sheet_sized(generator, parse_size(args.size), seed=args.seed)
            except ValueError as e:
                raise UsageError(f"--size {args.size}: {e}") from None
        else:
            sheet = contact_sheet(generator, seed=args.seed)
        sheet.save(out)
        print(f"wrote {out}")


def cmd_data(args) -> None:
    if args.source == "prepare":
        from engine.training import prepare

        if args.photos is None:
            raise UsageError("data prepare needs a photo folder: masquerade data prepare PHOTOS -o SET --size 256")
        manifest = prepare.prepare(args.photos, args.output, size=args.size, crop=args.crop,
                                   near_duplicate_bits=args.near_duplicates, min_side=args.min_side)
        print(f"{args.output}: {manifest.summary()} (details in {args.output / 'manifest.json'})")
        for entry in manifest.unreadable:
            print(f"  unreadable: {entry['source']} ({entry['error']})")
        if manifest.warning():
            print(f"warning: {manifest.warning()}")
        return
    from engine.training import emoji

    count = emoji.build(args.output, size=args.size)
    print(f"wrote {count} images to {args.output}")


def cmd_train(args) -> None:
    from engine.training import distributed
    from engine.training.gan import TrainConfig, Trainer

    data = args.data or args.data_dir
    if data is None or (args.data and args.data_dir and args.data != args.data_dir):
        raise UsageError("train needs one data folder: masquerade train DATA --out RUN (or --data DATA)")
    if args.init and not args.init.is_file():
        raise UsageError(f"--from {args.init}: no such model file")
    for flag, rate in (("--lr", args.lr), ("--g-lr", args.g_lr)):
        if not 0 <= rate < float("inf"):
            raise UsageError(f"{flag} {rate:g}: a learning rate is 0 (the architecture's own) or more")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device {args.device}: no CUDA device is available to PyTorch here")
    elif args.device not in ("auto", "cpu"):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {args.device!r}")
    cfg = TrainConfig(data=str(data), out=str(args.out), device=args.device, resolution=args.resolution,
                      z_dim=args.z_dim, g_channels=args.channels, d_channels=args.channels, batch=args.batch,
                      steps=args.steps,
                      snapshot_every=args.snapshot_every, seed=args.seed, threads=args.threads,
                      dataset_name=args.dataset_name, licence=args.licence, arch=args.arch or "",
                      init=str(args.init or ""), kimg=args.kimg or 0.0, snapshot_kimg=args.snapshot_kimg or 0.0,
                      augment=args.augment, ada_target=args.ada_target, ada_kimg=args.ada_kimg,
                      r1_gamma=-1.0 if args.r1_gamma is None else args.r1_gamma, pl_weight=args.pl_weight,
                      lr=args.lr, g_lr=args.g_lr, loss=args.loss, recon=args.recon,
                      snapshot_minutes=args.snapshot_minutes or 0.0, grow_to=args.grow_to or 0,
                      d_warmup=args.d_warmup, mbstd=args.mbstd)
    if cfg.mbstd > 64:
        raise UsageError(f"--mbstd {cfg.mbstd}: a group of at most 64 images (4 is usual)")
    if cfg.grow_to and not cfg.init:
        raise UsageError("--grow-to needs --from MODEL (the model to grow)")
    if not Path(cfg.data).is_dir():
        raise UsageError(f"{cfg.data}: no such data folder")
    if args.nproc > 1:
        distributed.spawn(cfg, args.nproc)
        print(f"snapshots in {cfg.out}")
        return
    try:
        trainer = Trainer(cfg)  # under torchrun: one of WORLD_SIZE processes (gloo)
        path = trainer.run(progress=trainer.rank == 0)
    finally:
        distributed.finish()
    if trainer.rank == 0:
        print(f"latest snapshot: {path}")


def cmd_inspect(args) -> None:
    from engine.training.novelty import inspect

    out = args.output or (args.target / "report.html" if args.target.is_dir() else args.target.with_suffix(".html"))
    summary = inspect(args.target, out, data=args.data, samples=args.samples, k=args.neighbours,
                      images=tuple(args.image or ()), seed=args.seed)
    for snap in summary["snapshots"]:
        print(f"{Path(snap['path']).name}: memorisation {snap['memorisation']:.0%} "
              f"(median nearest-neighbour ratio {snap['median_ratio']:.2f})")
    for still in summary["images"]:
        print(f"{Path(still['path']).name}: nearest training image {still['nearest']} (distance "
              f"{still['distance']:.3f}{', a copy' if still['copy'] else ''})")
    print(f"wrote {out}")


def cmd_train_sr(args) -> None:
    from engine.training.superres import SRTrainConfig, SRTrainer

    cfg = SRTrainConfig(out=str(args.out), steps=args.steps, batch=args.batch, scale=args.scale, num_feat=args.num_feat,
                        num_conv=args.num_conv, clipart=args.clipart, procedural=args.procedural,
                        snapshot_every=args.snapshot_every, seed=args.seed, threads=args.threads,
                        generator=str(args.generator or ""), init=str(args.init or ""))
    for flag, path in (("--generator", args.generator), ("--from", args.init)):
        if path is not None and not path.is_file():
            raise UsageError(f"{flag} {path}: no such model file")
    print(f"latest snapshot: {SRTrainer(cfg).run()}")


def cmd_train_style(args) -> None:
    from engine.training import style_image

    out = args.output
    if out.suffix != ".safetensors":
        raise UsageError(f"-o {out}: the style is written as a .safetensors file (e.g. -o my-style.safetensors)")
    if out.exists() and not args.force:
        raise UsageError(f"{out}: already exists; --force to overwrite it")
    if out.parent.exists() and not out.parent.is_dir():
        raise UsageError(f"{out.parent}: not a folder")
    if not 32 <= args.size <= 1024:
        raise UsageError(f"--size {args.size}: expected 32 to 1024 px")
    style_image.check_style_image(args.image)  # one line naming the file, before anything is loaded
    if args.content is not None and not args.content.is_dir():
        raise UsageError(f"--content {args.content}: no such folder")
    minutes = args.minutes if args.minutes is not None else (None if args.steps else 5.0)
    cfg = style_image.StyleConfig(
        image=str(args.image), out=str(out), size=args.size, minutes=minutes, steps=args.steps,
        content=str(args.content or ""), style_weight=args.style_weight, content_weight=args.content_weight,
        tv_weight=args.tv_weight, seed=args.seed, threads=args.threads,
        command="masquerade " + style_image.command_line(sys.argv[1:]))
    result = style_image.train(cfg)
    print(f"wrote {out} ({result['steps']} steps, {result['seconds'] / 60:.1f} min), {result['sheet']}, "
          f"{result['card']}")
    if result["interrupted"]:
        print("interrupted: saved the weights of the last step", file=sys.stderr)
        raise KeyboardInterrupt


def cmd_controllers(args) -> None:
    from engine import controllers
    from engine import show as shows

    show = shows.load(args.show) if args.show else None
    try:
        path = controllers.write(args.app, args.output, show)
    except OSError as e:
        raise UsageError(f"{args.output}: cannot write the layout: {e.strerror or e}") from None
    print(f"wrote {path} ({args.app}{', with ' + str(args.show) if args.show else ''}); "
          f"point it at this machine's OSC port ({show.osc.port if show else 9000})")


def cmd_midi(args) -> None:
    from engine.controls import learn, midi
    from engine.controls.source import DeviceLost

    if args.action == "list":
        try:
            ports = midi.input_names()
            print("MIDI inputs: " + (", ".join(ports) if ports else "none"))
        except DeviceLost as e:
            print(f"MIDI inputs: none here ({e})")
    if args.file is None:
        if args.action == "list":
            return
        raise UsageError(f"midi {args.action} needs a mappings file: masquerade midi {args.action} FILE.toml")
    tables = learn.read(args.file)  # a ControlError names the file and the key
    if args.action == "list":
        for controller, rows in sorted(tables.items()):
            print(f"{controller}: {len(rows)} mapping{'s' if len(rows) != 1 else ''}")
        if not tables:
            print(f"{args.file}: no mappings")
        return
    if args.controller is None and not (args.action == "clear" and args.all) and len(tables) > 1:
        raise UsageError(f"{args.file} holds {len(tables)} controllers ({', '.join(sorted(tables))}): name one")
    chosen = list(tables) if args.all or (args.controller is None and tables) else \
        [learn.pick(tables, args.controller or "")]
    if chosen in ([], [None]):
        raise UsageError(f"{args.file}: no controller {args.controller!r} (controllers: "
                         f"{', '.join(sorted(tables)) or 'none'})")
    if args.action == "show":
        for controller in chosen:
            print(f"[{controller}]")
            for source, m in sorted(tables[controller].items()):
                span = f"{m.range[0]:g}..{m.range[1]:g}" if m.range else "the param's range"
                print(f"  {source} -> {m.target}  {span}  {m.curve}{'  inverted' if m.invert else ''}  "
                      f"takeover {m.takeover}{'  quantise ' + m.quantise if m.quantise else ''}")
        return
    removed = 0
    for controller in chosen:
        if args.source:
            removed += tables[controller].pop(args.source, None) is not None
            if not tables[controller]:
                del tables[controller]
        else:
            removed += len(tables.pop(controller))
    learn.write(args.file, tables)
    print(f"{args.file}: removed {removed} mapping{'s' if removed != 1 else ''}")


def _kiosk_first(args) -> None:  # main() hands `masquerade kiosk ...` over before parsing
    raise UsageError("the kiosk takes no global options: masquerade kiosk SITE.toml")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (what is wrong, and where to read more)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="masquerade", description="Real-time latent-space walks from GANs.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--max-model-gb", type=_positive_float, metavar="N",
                   help="refuse model files whose config asks for more than N GB of weights (default 4, or "
                        "MASQUERADE_MAX_MODEL_GB); checked before anything is allocated")
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
    run.add_argument("--start-at", type=_non_negative_float, default=0.0, metavar="SECONDS",
                     help="start at this show time (the kiosk resumes a restarted show where it was)")
    run.add_argument("--cue", type=_positive_int, metavar="N", help="fire the show's cue N on the first frame")
    run.add_argument("--control", type=Path, metavar="FILE", help="the kiosk's control file: switch to the show it "
                                                                   "names, cross-fading (engine/switch.py)")
    run.add_argument("--sink", type=_sink, action="append", metavar="KIND[:VALUE]",
                     help="send the frames to another output too, as many as wanted: ndi:Masquerade, "
                          "stream:udp://127.0.0.1:5004, virtualcam, video:set.mp4 (docs/sinks.md)")
    run.set_defaults(func=cmd_run)

    kiosk = sub.add_parser("kiosk", help="run a gallery kiosk: supervise the engine, playlist, status page "
                                         "(installation/README.md)", add_help=False)
    kiosk.add_argument("site", help="SITE.toml [--check] (masquerade kiosk --help: its own options)")
    kiosk.set_defaults(func=_kiosk_first)

    ren = sub.add_parser("render", help="render a show to a video file or PNG folder, frame-exact")
    ren.add_argument("show", type=Path)
    ren.add_argument("-o", "--output", type=Path, required=True, help="piece.mp4, or a folder for PNGs")
    ren.add_argument("--seconds", type=_positive_float,
                     help="how much of the show to render (default: the whole piece, to its last scene's or "
                          "timed cue's end; a show that plays for ever needs it)")
    ren.add_argument("--fps", type=_positive_float, help="default: the show's")
    ren.add_argument("--size", type=_size, help="WIDTHxHEIGHT (default: the show's)")
    ren.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ren.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ren.add_argument("--no-overlap", action="store_true", help="draw and write one frame after the other (the "
                                                               "same frames, slower: for comparison)")
    ren.add_argument("--batch", type=_positive_int, help="frames of show time generated at once (default 4; a "
                                                        "stateful filter, mirror mode or scenes make it 1, said in "
                                                        "the log); within 1/255 of --batch 1")
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
    mod.add_argument("--size", help="sheet: WIDTHxHEIGHT to fill at the model's own pixels (e.g. 1920x1080); "
                                    "default: 32 samples and 3 walks, 8 wide, doubled")
    mod.set_defaults(func=cmd_models)

    data = sub.add_parser("data", help="build a training set")
    data.add_argument("source", choices=["emoji", "prepare"],
                      help="emoji: Noto Color Emoji glyphs (fonts-noto-color-emoji); prepare PHOTOS: a folder of "
                           "your photos (JPEG/PNG/WebP, searched recursively), squared, resized, de-duplicated")
    data.add_argument("photos", nargs="?", type=Path, help="prepare: the photo folder")
    data.add_argument("-o", "--output", type=Path, required=True)
    data.add_argument("--size", type=_positive_int, default=64)
    data.add_argument("--crop", choices=["centre", "smart", "pad"], default="centre",
                      help="prepare: how to make a square (smart: the window with the most detail)")
    data.add_argument("--near-duplicates", type=int, default=10, metavar="BITS",
                      help="prepare: drop images whose 63-bit pHash is within BITS of a kept one (-1: keep)")
    data.add_argument("--min-side", type=_positive_int, help="prepare: drop photos whose shorter side is below "
                                                              "this (default: --size, so nothing is upscaled)")
    data.set_defaults(func=cmd_data)

    tr = sub.add_parser("train", help="train or fine-tune a GAN (DCGAN, StyleGAN2, lightweight-gan) on a folder "
                                      "of images")
    tr.add_argument("data_dir", nargs="?", type=Path, help="the training set (as --data)")
    tr.add_argument("--data", type=Path)
    tr.add_argument("--out", type=Path, required=True, help="run folder: snapshots, sample grids, state.pt")
    tr.add_argument("--resolution", type=_positive_int, default=64)
    tr.add_argument("--z-dim", type=_positive_int, default=128)
    tr.add_argument("--channels", type=_positive_int, default=32, help="base width of G and D")
    tr.add_argument("--batch", type=_positive_int, default=64)
    tr.add_argument("--steps", type=_positive_int, default=10_000)
    tr.add_argument("--snapshot-every", type=_positive_int, default=500)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--threads", type=int, default=0)
    tr.add_argument("--device", default="auto", help="auto (CUDA when PyTorch sees one), cpu, cuda or cuda:N")
    tr.add_argument("--dataset-name", default="")
    tr.add_argument("--licence", default="")
    tr.add_argument("--arch", choices=["dcgan", "stylegan2", "lightweight-gan"],
                    help="default: the --from model's, else dcgan; lightweight-gan: FastGAN (skip-layer excitation)")
    tr.add_argument("--from", dest="init", type=Path, metavar="MODEL",
                    help="fine-tune this model file (ours, NVlabs .pkl, rosinality .pt, DCGAN .pth); its "
                         "discriminator too when NAME-discriminator.safetensors lies beside it")
    tr.add_argument("--grow-to", type=_positive_int, metavar="RESOLUTION",
                    help="with --from (a DCGAN): train at this higher resolution, its layers up to the old output "
                         "taken from the model (progressive growing in one step); a fresh discriminator")
    tr.add_argument("--d-warmup", type=_non_negative_int, default=0, metavar="STEPS",
                    help="the first STEPS steps train the discriminator alone (for a fresh D against a G that "
                         "already draws well: --grow-to, or --from without its discriminator)")
    tr.add_argument("--mbstd", type=_non_negative_int, default=0, metavar="GROUP",
                    help="DCGAN: the discriminator also sees the spread of its features over groups of GROUP images "
                         "(ProGAN's minibatch std), so it can punish a generator short of variety; a fresh D")
    tr.add_argument("--kimg", type=_positive_float, help="train until N thousand images were shown (overrides --steps)")
    tr.add_argument("--snapshot-kimg", type=_positive_float,
                    help="a snapshot every N kimg (overrides --snapshot-every)")
    tr.add_argument("--snapshot-minutes", type=_positive_float,
                    help="also a snapshot whenever N minutes passed since the last (long runs on shared machines)")
    tr.add_argument("--augment", choices=["auto", "diffaugment", "ada", "none"], default="auto",
                    help="auto: DiffAugment for DCGAN, ADA for StyleGAN2")
    tr.add_argument("--ada-target", type=_positive_float, default=0.6, help="ADA: the r_t to steer toward")
    tr.add_argument("--ada-kimg", type=_positive_float, default=100.0, help="ADA: kimg for p to move by 1")
    tr.add_argument("--r1-gamma", type=float, help="R1 weight (default: none for DCGAN, 2e-4*R^2/batch StyleGAN2)")
    tr.add_argument("--pl-weight", type=float, default=0.0, help="StyleGAN2 path-length regularisation (0: off)")
    tr.add_argument("--loss", choices=["auto", "logistic", "hinge"], default="auto",
                    help="auto: hinge for lightweight-gan, non-saturating logistic otherwise")
    tr.add_argument("--recon", type=float, default=1.0,
                    help="lightweight-gan: weight of the discriminator's reconstruction loss (0: off)")
    tr.add_argument("--lr", type=float, default=0.0, help="0: the architecture's own (2e-4 DCGAN, 2.5e-3 StyleGAN2)")
    tr.add_argument("--g-lr", type=float, default=0.0,
                    help="the generator's rate (0: --lr's, a quarter of it for lightweight-gan)")
    tr.add_argument("--nproc", type=_positive_int, default=1,
                    help="data-parallel processes on this machine (gloo); or launch under torchrun")
    tr.set_defaults(func=cmd_train)

    ins = sub.add_parser("inspect", help="HTML report: the same walk across a run's snapshots, and whether the "
                                         "samples copy training images (nearest neighbours, memorisation)")
    ins.add_argument("target", type=Path, help="a run folder (its generator-*.safetensors) or one model file")
    ins.add_argument("--data", type=Path, help="the training set (default: the one the snapshot was trained on)")
    ins.add_argument("-o", "--output", type=Path, help="the report (default: RUN/report.html)")
    ins.add_argument("--samples", type=_positive_int, default=16)
    ins.add_argument("--neighbours", type=_positive_int, default=3)
    ins.add_argument("--image", type=Path, action="append", help="also a still the show saved (repeatable)")
    ins.add_argument("--seed", type=int, default=0)
    ins.set_defaults(func=cmd_inspect)

    sr = sub.add_parser("train-sr", help="train the x4 (or x2) super-resolution filter on emoji, clipart and drawn "
                                         "shapes (more options: python -m engine.training.superres --help)")
    sr.add_argument("--out", type=Path, required=True, help="run folder: snapshots, state.pt (resumes from it)")
    sr.add_argument("--steps", type=_positive_int, default=4000)
    sr.add_argument("--batch", type=_positive_int, default=32)
    sr.add_argument("--scale", type=int, choices=[2, 4], default=4,
                    help="x4 (the shipped model's, for 64 px generators) or x2 (cheaper at 128 px)")
    sr.add_argument("--num-feat", type=_positive_int, default=32)
    sr.add_argument("--num-conv", type=_positive_int, default=6)
    sr.add_argument("--clipart", type=int, default=5000, help="Openclipart files to use, if installed (0: none)")
    sr.add_argument("--procedural", type=int, default=2000, help="drawn pictures")
    sr.add_argument("--snapshot-every", type=_positive_int, default=500)
    sr.add_argument("--generator", type=Path, metavar="MODEL",
                    help="train on this generator's own frames too (each shrunk is the input, itself the target), "
                         "so the SR knows what that GAN draws")
    sr.add_argument("--from", dest="init", type=Path, metavar="SR_MODEL",
                    help="start from this SR file (same --scale, --num-feat, --num-conv) instead of from bilinear")
    sr.add_argument("--seed", type=int, default=0)
    sr.add_argument("--threads", type=int, default=0)
    sr.set_defaults(func=cmd_train_sr)

    st = sub.add_parser("train-style", help="train a style for the `style` filter from any picture (fast neural "
                                            "style; a few minutes on a CPU; more options: python -m "
                                            "engine.training.style_image --help)")
    st.add_argument("--image", type=Path, required=True, help="the style picture (PNG, JPEG, ...)")
    st.add_argument("-o", "--output", type=Path, required=True,
                    help="OUT.safetensors; OUT-sheet.png (before / after) and OUT.md (model card) beside it")
    st.add_argument("--minutes", type=_positive_float, help="train this long (default 5, or none with --steps)")
    st.add_argument("--steps", type=_positive_int, help="train this many steps (and stop at --minutes if given)")
    st.add_argument("--size", type=_positive_int, default=256,
                    help="content frame size in px: the size the filter runs at in the show (default 256)")
    st.add_argument("--content", type=Path, help="a folder of your own pictures as content (default: frames of "
                                                  "shows/default.toml through its super-resolution)")
    st.add_argument("--style-weight", type=_positive_float, default=2.0, help="more: bolder style (default 2)")
    st.add_argument("--content-weight", type=_positive_float, default=1.0,
                    help="more: the frame's shapes kept (default 1)")
    st.add_argument("--tv-weight", type=_non_negative_float, default=0.2, help="smoothness (default 0.2)")
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest on a busy machine; "
                                                           "0: PyTorch's default, all cores)")
    st.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    st.set_defaults(func=cmd_train_style)

    from engine.controllers import names as controller_apps

    ctl = sub.add_parser("controllers", help="write a controller layout for the OSC address space: TouchOSC "
                                             "(.tosc) or an Open Stage Control session (.json)")
    ctl.add_argument("app", choices=controller_apps())
    ctl.add_argument("-o", "--output", type=Path, required=True, help="masq.tosc, or masq.json")
    ctl.add_argument("--show", type=Path, help="add this show's filter and direction faders and its cues")
    ctl.set_defaults(func=cmd_controllers)

    mid = sub.add_parser("midi", help="MIDI inputs and the mappings MIDI learn saves (docs/inputs.md)")
    mid.add_argument("action", choices=["list", "show", "clear"],
                     help="list [FILE]: the MIDI inputs here, and the controllers FILE maps; show FILE [CONTROLLER]: "
                          "its mappings; clear FILE CONTROLLER [--source midi:cc/1/7] (or --all): forget them")
    mid.add_argument("file", nargs="?", type=Path, help="a mappings file ([midi] mappings of a show)")
    mid.add_argument("controller", nargs="?", help="a controller's MIDI port name, or a part of it")
    mid.add_argument("--source", help="clear: only this control (midi:cc/1/7)")
    mid.add_argument("--all", action="store_true", help="clear: every controller in the file")
    mid.set_defaults(func=cmd_midi)

    from engine.latent import bookmarks_command
    from engine.weights import command as weights_command

    bookmarks_command.add_parser(sub)
    weights_command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["kiosk"]:  # the supervisor: its own arguments and logging, and it never imports torch
        from installation.kiosk.__main__ import main as kiosk_main

        return kiosk_main(argv[1:], prog="masquerade kiosk")
    args = build_parser().parse_args(argv)
    if args.max_model_gb is not None:  # read where configs are checked (engine/generators/limits.py), workers too
        os.environ["MASQUERADE_MAX_MODEL_GB"] = repr(args.max_model_gb)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        args.func(args)
    except (MasqueradeError, OSError) as e:  # an OSError: one line with the path (a full disk, a read-only folder)
        status = getattr(e, "exit_status", 2)
        text = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename and e.strerror else str(e)
        print(f"masquerade: {'error: ' if status == 2 else ''}{text}", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
