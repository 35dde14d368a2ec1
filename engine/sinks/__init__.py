"""Outputs of the finished frame, by short name: `create("video", path=..., fps=...)`.

A sink takes `write(rgb, tick)` with rgb an HxWx3 uint8 array (top row first) and `close()`.
The window is not here: it presents the GL framebuffer directly and lives in `engine.window`.
"""

from __future__ import annotations

from pathlib import Path

from engine.registry import Registry

SINKS: dict[str, str] = {
    "video": "engine.sinks.video:Writer",
    "images": "engine.sinks.images:Writer",
}


registry = Registry("sink", SINKS)
names, create = registry.names, registry.create


def for_path(path: str | Path, fps: float):
    """A file sink chosen by the output path: a video by its suffix, else a folder of PNGs."""
    path = Path(path)
    if path.suffix.lower() in (".mp4", ".mkv", ".mov"):
        return create("video", path=path, fps=fps)
    return create("images", folder=path)
