"""Outputs of the finished frame, by short name: `create("video", path=..., fps=...)`.

The contract, small on purpose: a sink is built from its show row's keys (plus `size` and `fps`, filled
in by the engine when the constructor names them), takes `write(rgb, tick)` with rgb an HxWx3 uint8
array (top row first) and `close()`. A sink that cannot work on this machine (no driver, no runtime,
wrong platform) raises `Unavailable` with one line naming what to install; the show goes on without it.
Live runs put each sink on its own thread behind a bounded queue (`engine.sinks.live`), so a stalled
receiver loses frames instead of holding the show. docs/sinks.md describes every sink.
The window is not here: it presents the GL framebuffer directly and lives in `engine.window`.
"""

from __future__ import annotations

import errno
import inspect
from pathlib import Path

from engine.errors import MasqueradeError
from engine.registry import Registry

SINKS: dict[str, str] = {
    "video": "engine.sinks.video:Writer",
    "images": "engine.sinks.images:Writer",
    "null": "engine.sinks.null:Sink",
    "pipe": "engine.sinks.pipe:Writer",
    "stream": "engine.sinks.stream:Writer",
    "virtualcam": "engine.sinks.virtualcam:Camera",
    "ndi": "engine.sinks.ndi:Sender",
    "spout": "engine.sinks.spout:Sender",
    "syphon": "engine.sinks.syphon:Server",
}
FILLED_IN = ("size", "fps")  # given by the engine (the output size and the show's fps), never by a row


class Unavailable(MasqueradeError):
    """This sink cannot run here; the message says why and what to install, in one line."""


registry = Registry("sink", SINKS)
names, create = registry.names, registry.create


def check(kind: str, args: dict) -> None:
    """A show row's sink and keys, checked when the show loads (ValueError names the problem). Sink
    modules import their heavy libraries only when a sink is built, so this is cheap."""
    if kind not in SINKS:
        raise ValueError(f"kind must be one of {', '.join(names())}, got {kind!r}")
    for key in FILLED_IN:
        if key in args:
            raise ValueError(f"{key} is not a sink key: every sink gets the show's output {key}")
    params = inspect.signature(registry.get(kind)).parameters
    unknown = sorted(set(args) - set(params))
    if unknown:
        keys = [p for p in params if p not in FILLED_IN]
        raise ValueError(f"unknown key {unknown[0]!r} (a {kind} sink takes {', '.join(keys) or 'no keys'})")
    missing = [p.name for p in params.values() if p.default is inspect.Parameter.empty
               and p.name not in FILLED_IN and p.name not in args and p.kind is p.POSITIONAL_OR_KEYWORD]
    if missing:
        raise ValueError(f"a {kind} sink needs {', '.join(missing)}")


def parse_spec(spec: str) -> tuple[str, dict]:
    """A sink from the command line, `KIND[:VALUE]` -> (kind, row): VALUE goes to the sink's first key
    (`ndi:Masquerade` -> name, `stream:udp://127.0.0.1:5004` -> url, `video:piece.mp4` -> path). Checked
    like a show row, so a mistake names the spec."""
    kind, colon, value = spec.partition(":")
    if kind not in SINKS:
        raise ValueError(f"--sink {spec}: the kind must be one of {', '.join(names())}, got {kind!r}")
    keys = [p for p in inspect.signature(registry.get(kind)).parameters if p not in FILLED_IN]
    args = {}
    if colon:
        if not keys:
            raise ValueError(f"--sink {spec}: a {kind} sink takes no value")
        args[keys[0]] = value.split() if keys[0] == "command" else value
    try:
        check(kind, args)
    except ValueError as e:
        raise ValueError(f"--sink {spec}: {e}") from None
    return kind, args


def open_sink(kind: str, args: dict, size: tuple[int, int], fps: float):
    """Build a sink from its row, filling in the output size and fps where its constructor asks."""
    cls = registry.get(kind)
    params = inspect.signature(cls).parameters
    given = {"size": tuple(size), "fps": fps}
    return cls(**args, **{k: v for k, v in given.items() if k in params})


VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def make_folder(folder: Path) -> None:
    """mkdir -p, where a file in the way says so (not "File exists")."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as e:
        raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of this folder", e.filename) from None


def for_path(path: str | Path, fps: float, size: tuple[int, int] | None = None):
    """A file sink chosen by the output path: a video by its suffix (of `size`, when known: checked and
    opened now), else a folder of PNGs. Either writes beside the name and takes it only when closed."""
    path = Path(path)
    if is_video(path):
        return create("video", path=path, fps=fps, size=size)
    return create("images", folder=path)
