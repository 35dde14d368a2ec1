"""TouchOSC (hexler, the 2021- app; `.tosc`: zlib-compressed XML, `<lexml>` of `<node>`s) layouts, through
py2tosc.

py2tosc rather than tosclib: tosclib (last release 2022) imports pyparsing without declaring it, so a clean
`pip install tosclib` cannot be imported, and it pulls lxml and numpy for nothing; py2tosc is its
maintained rewrite, has no dependencies, round-trips files the TouchOSC editor wrote byte for byte and
checks a layout against the rules the app applies (`validate`), which `write` runs before saving.

One page per area in a PAGER (tabs along the top), each page a grid of labelled controls. A fader sends
its `x` scaled to the address's input range; a button sends on the rising edge only (the press), a pad sends
its whole number as an int32 on press. Node ids are derived from the control keys (UUID 5), so the same
layout gives the same file. TouchOSC keeps connections in the app, not the file: point connection 1 at
the engine (UDP, host, port 9000).
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import py2tosc
from py2tosc import ui

from engine.controllers.layout import Control, Page

SIZE = (1024, 768)  # the canvas; TouchOSC scales it to the device
COLUMNS = 6
NAMESPACE = uuid.UUID("8c6f1f55-7a3e-4c52-9a4e-6d61737175e1")  # ids: uuid5(NAMESPACE, path in the layout)
COLOURS = {"fader": "#3a86ff", "button": "#ff006e", "pad": "#8338ec"}


def _control(c: Control) -> py2tosc.Control:
    if c.kind == "fader":
        arg = ui.value("x", scale=(c.low, c.high))
        node = py2tosc.fader(name=c.key, color=COLOURS["fader"],
                             messages=[ui.osc(c.address, args=[arg])])
        node.values = [v for v in node.values if v.key != "x"]
        span = c.high - c.low
        node.values.insert(0, py2tosc.Value("x", default=(c.default - c.low) / span if span else 0.0))
    elif c.kind == "button":
        node = py2tosc.button(name=c.key, color=COLOURS["button"],
                              messages=[ui.osc(c.address, on="RISE", args=[ui.value("x", scale=(0.0, 1.0))])])
    else:
        number = ui.const(str(int(c.low)), conversion="INTEGER")
        node = py2tosc.button(name=c.key, color=COLOURS["pad"], messages=[ui.osc(c.address, on="RISE", args=[number])])
    return ui.labelled(node, c.label, size=14, name=f"{c.key}_cell")


def _page(page: Page) -> py2tosc.Control:
    cells = [_control(c) for c in page.controls]
    if not cells:
        note = py2tosc.label(name=f"{page.name}_note", text_size=18,
                             values=[py2tosc.Value("text", default=page.note), py2tosc.Value("touch", default=False)])
        return ui.row(note, pad=16, name=page.title, interactive=False, outline=False)
    rows = max(4, math.ceil(len(cells) / COLUMNS))
    return ui.tiles(*cells, columns=COLUMNS, rows=rows, gap=6, pad=8, name=page.title, interactive=False,
                    outline=False)


def _stable_ids(node: py2tosc.Control, path: str) -> None:
    object.__setattr__(node, "id", str(uuid.uuid5(NAMESPACE, path)))
    for i, child in enumerate(node.children):
        _stable_ids(child, f"{path}/{child.get('name') or i}")


def document(layout: list[Page]) -> py2tosc.Document:
    root = ui.stack(ui.pager(*[_page(p) for p in layout], name="pages"), frame=(0, 0, *SIZE), name="masquerade")
    doc = py2tosc.Document(root=root)
    doc.resolve()
    _stable_ids(doc.root, "masquerade")
    return doc


def write(layout: list[Page], path: Path) -> None:
    """Save `layout` as a `.tosc`; raises (writing nothing) if py2tosc finds an error TouchOSC would reject."""
    doc = document(layout)
    errors = [issue for issue in doc.validate() if issue.level == "error"]
    if errors:
        raise ValueError(f"the TouchOSC layout is invalid: {errors[0]}")
    doc.save(str(path))
