"""Controller layouts generated from the OSC address space: `masquerade controllers KIND -o FILE [--show S]`.

`layout.pages(show)` says what is on the controller (pages of faders, buttons and pads, each with its
address and range); a writer per app turns that into the app's file. A new app is one file plus one line
in `WRITERS` (lazy dotted paths, so py2tosc loads only for TouchOSC).
"""

from __future__ import annotations

from pathlib import Path

from engine.registry import Registry

WRITERS: dict[str, str] = {
    "touchosc": "engine.controllers.touchosc:write",  # .tosc, TouchOSC by hexler (2021-)
    "open-stage-control": "engine.controllers.open_stage_control:write",  # session .json
}
SUFFIXES = {"touchosc": ".tosc", "open-stage-control": ".json"}

registry = Registry("controller", WRITERS)
names = registry.names


def write(kind: str, path: str | Path, show=None) -> Path:
    """Write the `kind` layout for `show` (None: the address space alone) to `path`; returns the path."""
    from engine.controllers.layout import pages

    path = Path(path)
    registry.get(kind)(pages(show), path)
    return path
