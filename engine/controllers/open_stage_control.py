"""Open Stage Control (openstagecontrol.ammd.net) sessions: a JSON file the app opens with File > Open.

No library writes these, and the format is plain JSON, so it is written here, to the shape the app's own
loader reads (src/client/managers/session/session.mjs and parser.mjs in its repository):
`{"version", "type": "session", "content": <root widget>}`. `version` must be at least the newest of the
loader's converters (1.24.2), or they rewrite the file as an old session; the root widget holds `tabs`,
a tab holds `widgets`. The loader fills every prop left out with the widget type's default and silently
drops any prop the type does not declare (and an unknown `type` becomes a fader), so this writer only
uses props the types declare (tests/test_controller_layouts.py holds the table, from the app's widget
sources) and gives every widget a unique `id` (widgets that share an id act as clones).

A fader sends its value in `range` (the address's input range) as a float, `decimals` 3; a button is in
`tap` mode (sends `on`, 1, on press and nothing on release); a pad is a tap button whose `on` is its
number, sent as an int (`typeTags` "i"). Sessions carry no target: start the app with
`--send HOST:9000` (the engine's [osc] port) so every widget sends there.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from engine.controllers.layout import Control, Page

VERSION = "1.29.0"  # the session format of Open Stage Control 1.29 (newer than every converter in the loader)
COLUMNS = 6


def _widget(c: Control) -> dict:
    if c.kind == "fader":
        return {"type": "fader", "id": c.key, "address": c.address, "range": {"min": c.low, "max": c.high},
                "default": c.default, "typeTags": "f", "decimals": 3, "design": "compact", "expand": True,
                "html": f"<label>{html.escape(c.label)}</label>", "comments": c.about}
    if c.kind == "button":
        return {"type": "button", "id": c.key, "address": c.address, "label": c.label, "mode": "tap", "on": 1,
                "off": 0, "typeTags": "i", "expand": True, "comments": c.about}
    number = int(c.low)
    return {"type": "button", "id": c.key, "address": c.address, "label": c.label, "mode": "tap", "on": number,
            "off": 0, "typeTags": "i", "expand": True, "comments": c.about}


def _tab(page: Page) -> dict:
    widgets = [_widget(c) for c in page.controls]
    if not widgets:
        widgets = [{"type": "text", "id": f"{page.name}_note", "default": page.note, "wrap": "soft", "expand": True}]
    return {"type": "tab", "id": f"tab_{page.name}", "label": page.title, "layout": "grid",
            "gridTemplate": COLUMNS, "widgets": widgets}


def session(layout: list[Page]) -> dict:
    return {"createdWith": "Masquerade", "version": VERSION, "type": "session",
            "content": {"type": "root", "id": "root", "tabs": [_tab(p) for p in layout]}}


def write(layout: list[Page], path: Path) -> None:
    Path(path).write_text(json.dumps(session(layout), indent=2) + "\n", encoding="utf-8")
