"""MIDI learn and the MIDI mappings file: a control moved on stage binds to the param touched last.

While learn is on (`/masq/learn/start` .. `/masq/learn/stop` over OSC, the `l` key in the window, the kiosk
status page's button), an OSC message on a param's address (a fader touched in the controller app) marks
that param; the next MIDI control that moves (`midi:cc/1/7`, a pad's `midi:note/1/36`) is bound to it at once
and saved. `Learn.observe` is the bus's observer, so it sees every post from any input thread: a MIDI port
(`MidiInput`), a `.mid` file (`MidiFile`, `MidiFileFeed`) and OSC go through the same path.

A mapping is a bus `Binding`: its range is the binding's `output`, `invert` swaps its `input` ends, `curve` is
"linear" or "exp", and `takeover = "soft"` (the default for learned mappings) lets a fader take its param only
when it reaches the param's value or crosses it (engine/controls/bus.py), so a fader left elsewhere never
makes the picture jump. `quantise` ("beat", "bar", "none") makes a trigger wait for the beat (engine/timeline.py).

The mappings file is TOML, one table per controller, keyed by its MIDI port name (without ALSA's client
numbers), one inline table per control:

    ["nanoKONTROL2:nanoKONTROL2 MIDI 1"]
    "midi:cc/1/7" = { target = "walk.speed", range = [0.125, 8.0], curve = "exp", invert = false, takeover = "soft" }
    "midi:note/1/36" = { target = "bookmark.recall", range = [3.0, 3.0], quantise = "bar" }

It is rewritten whole on each change, atomically (a temporary file beside it, then a rename), so a show
never reads half of it. A show includes it with `[midi] mappings = "file.toml"`.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
import threading
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.controls.bus import CURVES, Binding, ControlError, Param

log = logging.getLogger("masquerade.learn")

MAX_BYTES = 1 << 20
SOURCE = re.compile(r"midi:(?:(?:cc|note)/(\d+)/(\d+)|(?:pitch|program)/(\d+))")
TAKEOVERS = ("soft", "jump")
QUANTISE = ("", "beat", "bar", "none")
KEYS = ("target", "range", "curve", "invert", "takeover", "quantise")
COMMANDS = ("/masq/learn/start", "/masq/learn/stop")  # OSC addresses the receiver hands to `Learn.command`


@dataclass(frozen=True)
class MidiMapping:
    """One learned (or hand-written) mapping: a MIDI control onto a param."""
    source: str  # "midi:cc/1/7"
    target: str
    range: tuple[float, float] | None = None  # None: the param's whole range
    curve: str = "linear"
    invert: bool = False
    takeover: str = "soft"
    quantise: str = ""

    def binding(self, where: str) -> Binding:
        return Binding(self.source, self.target, (1.0, 0.0) if self.invert else (0.0, 1.0), self.curve,
                       output=self.range, where=where, takeover=self.takeover, quantise=self.quantise)

    def row(self) -> dict:
        row: dict = {"target": self.target}
        if self.range is not None:
            row["range"] = [float(self.range[0]), float(self.range[1])]
        row.update(curve=self.curve, invert=self.invert, takeover=self.takeover)
        if self.quantise:
            row["quantise"] = self.quantise
        return row



def controller_name(port: str) -> str:
    """A MIDI port's name without the client:port numbers ALSA appends (they change from boot to boot)."""
    return re.sub(r"\s+\d+:\d+$", "", str(port)).strip() or str(port)


def check_source(source: str, where: str) -> None:
    found = SOURCE.fullmatch(source) if isinstance(source, str) else None
    numbers = [int(n) for n in found.groups() if n is not None] if found else []
    if not found or not 1 <= numbers[0] <= 16 or (len(numbers) > 1 and not 0 <= numbers[1] <= 127):
        raise ControlError(f"{where}: not a MIDI control: {source!r} (expected midi:cc/<channel 1..16>/<0..127>, "
                           "midi:note/<channel>/<note>, midi:pitch/<channel> or midi:program/<channel>)")


def _quote(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)  # a TOML basic string: JSON's escapes are TOML's


def read(path: Path) -> dict[str, dict[str, MidiMapping]]:
    """The mappings file -> {controller: {source: Mapping}}; a missing file is empty. Every mistake is a
    ControlError naming the file and the key."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ControlError(f"{path}: {path.stat().st_size:,} bytes is not a mappings file (at most {MAX_BYTES:,})")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ControlError(f"{path}: cannot read it: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ControlError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:
        raise ControlError(f"{path}: not valid TOML here: nested too deeply") from None
    except UnicodeDecodeError as e:
        raise ControlError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    tables: dict[str, dict[str, MidiMapping]] = {}
    for controller, rows in data.items():
        here = f"{path}: [{_quote(controller)}]"
        if not isinstance(rows, dict):
            raise ControlError(f"{here} must be a table of \"midi:...\" = {{ target = ... }} rows, got {rows!r}")
        tables[controller] = {source: _mapping(source, row, f"{here}.{_quote(source)}") for source, row in rows.items()}
    return tables


def _mapping(source: str, row, here: str) -> MidiMapping:
    check_source(source, here)
    if not isinstance(row, dict):
        raise ControlError(f"{here} must be a table with a target, got {row!r}")
    unknown = sorted(set(row) - set(KEYS))
    if unknown:
        raise ControlError(f"{here}: unknown key {unknown[0]!r} (expected {', '.join(KEYS)})")
    target = row.get("target")
    if not isinstance(target, str) or not target:
        raise ControlError(f"{here}.target must be a param name like \"walk.speed\", got {target!r}")
    span = row.get("range")
    if span is not None:
        if (not isinstance(span, list) or len(span) != 2
                or any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in span)):
            raise ControlError(f"{here}.range must be [low, high], two finite numbers, got {span!r}")
        span = (float(span[0]), float(span[1]))
    curve = row.get("curve", "linear")
    if curve not in CURVES:
        raise ControlError(f"{here}.curve must be \"linear\" or \"exp\", got {curve!r}")
    invert = row.get("invert", False)
    if not isinstance(invert, bool):
        raise ControlError(f"{here}.invert must be true or false, got {invert!r}")
    takeover = row.get("takeover", "soft")
    if takeover not in TAKEOVERS:
        raise ControlError(f"{here}.takeover must be \"soft\" or \"jump\", got {takeover!r}")
    quantise = row.get("quantise", "")
    if quantise not in QUANTISE:
        raise ControlError(f"{here}.quantise must be \"beat\", \"bar\" or \"none\", got {quantise!r}")
    return MidiMapping(source, target, span, curve, invert, takeover, quantise)


def check(mapping: MidiMapping, params: Mapping[str, Param], here: str) -> None:
    """The mapping against the show's params: a known target, a range inside the param's."""
    p = params.get(mapping.target)
    if p is None:
        near = difflib.get_close_matches(mapping.target, list(params), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ControlError(f"{here}.target: no param {mapping.target!r}{hint}")
    if mapping.range is not None:
        lo, hi = mapping.range
        if not (p.minimum <= lo <= p.maximum and p.minimum <= hi <= p.maximum) or (lo == hi and not p.trigger):
            raise ControlError(f"{here}.range must be two different values in {p.minimum:g}..{p.maximum:g} "
                               f"({mapping.target}), got [{lo:g}, {hi:g}]")
    lo, hi = mapping.range or (p.minimum, p.maximum)
    if mapping.curve == "exp" and not lo * hi > 0:
        raise ControlError(f"{here}.curve: exp needs a range on one side of zero, got {lo:g}..{hi:g}")


def write(path: Path, tables: dict[str, dict[str, MidiMapping]]) -> Path:
    """Write the whole file atomically: a temporary file in the same folder, flushed, then renamed over it."""
    path = Path(path)
    lines = ["# Masquerade MIDI mappings: one table per controller (its MIDI port name), written by MIDI learn.",
             "# Keys: target, range = [low, high], curve = \"linear\"|\"exp\", invert, takeover = \"soft\"|\"jump\",",
             "# quantise = \"beat\"|\"bar\"|\"none\". Manage with: masquerade midi list|show|clear THIS_FILE", ""]
    for controller in sorted(tables):
        lines.append(f"[{_quote(controller)}]")
        for source in sorted(tables[controller]):
            row = tables[controller][source].row()
            cells = ", ".join(f"{k} = {_value(v)}" for k, v in row.items())
            lines.append(f"{_quote(source)} = {{ {cells} }}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return _quote(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return repr(float(v))


def pick(tables: dict, port: str = "", file: str = "") -> str | None:
    """Which controller's table a show uses: its `[midi] port` (the name, or a part of it, as MidiInput
    matches ports), else its `[midi] file`'s name; "any" (or no port) takes the only table there is."""
    if port and port != "any":
        if port in tables:
            return port
        near = sorted(k for k in tables if port.lower() in k.lower())
        return near[0] if near else None
    if file and Path(file).name in tables:
        return Path(file).name
    return next(iter(tables)) if len(tables) == 1 else None


def bindings(path: Path, params: Mapping[str, Param], port: str = "", file: str = "") -> list[Binding]:
    """The show's bindings from its mappings file (checked; a ControlError names the file and the key)."""
    tables = read(path)
    controller = pick(tables, port, file)
    if controller is None:
        if tables:
            log.info("%s: no mappings for MIDI %r (controllers: %s)", path, port or file or "any", ", ".join(tables))
        return []
    rows = []
    for source, mapping in tables[controller].items():
        here = f"{path}: [{_quote(controller)}].{_quote(source)}"
        check(mapping, params, here)
        rows.append(mapping.binding(here))
    return rows


class Learn:
    """MIDI learn for one run. `observe(source, value)` is the bus's observer (any thread); `start`, `stop`,
    `toggle` from OSC, the window or the status page. `controller()` names the MIDI controller being learned
    (its port name, or the .mid file's name); `path` is the mappings file learned mappings are saved to."""

    def __init__(self, bus, path: Path, controller: Callable[[], str | None] | str = "midi"):
        self.bus, self.path = bus, Path(path)
        self.controller = controller if callable(controller) else (lambda: controller)  # settable: a port's name
        self.active = False
        self.touched: tuple[str, float] | None = None  # (param, its value as touched) waiting for a MIDI control
        self.learned: list[tuple[str, str]] = []  # (source, target) learned in this run
        self.error = ""  # why the last save failed ("" when it did not)
        self._lock = threading.Lock()

    # --- switching it on and off ---

    def start(self) -> None:
        with self._lock:
            if not self.active:
                self.active, self.touched = True, None
                log.info("MIDI learn on: touch a param (an OSC fader), then move a MIDI control")

    def stop(self) -> None:
        with self._lock:
            if self.active:
                self.active, self.touched = False, None
                log.info("MIDI learn off (%d learned this run, saved in %s)", len(self.learned), self.path)

    def toggle(self) -> None:
        (self.stop if self.active else self.start)()

    def command(self, address: str, value: float) -> None:
        """`/masq/learn/start` and `/masq/learn/stop` (0 is a button's release: nothing)."""
        if value:
            (self.start if address.endswith("/start") else self.stop)()

    def state(self) -> dict:
        touched = self.touched
        return {"active": self.active, "param": touched[0] if touched else None, "learned": len(self.learned),
                "file": str(self.path), "error": self.error}

    # --- the bus's observer ---

    def observe(self, source: str, value: float | None) -> None:
        if not self.active or value is None:
            return
        scheme = source.partition(":")[0]
        if scheme == "osc":
            routes = self.bus.routes(source)
            if routes:
                b = routes[0]
                param = self.bus.params[b.target]
                try:
                    shown = b.map(float(value), param)
                except (TypeError, ValueError, ZeroDivisionError, OverflowError):
                    return
                with self._lock:
                    self.touched = (b.target, shown)
        elif scheme == "midi":
            if source.startswith("midi:note/") and not value:
                return  # a pad's release
            with self._lock:
                touched, self.touched = self.touched, None
            if touched is not None:
                self._bind(source, *touched)

    def _bind(self, source: str, target: str, value: float) -> None:
        param = self.bus.params[target]
        osc = [b for b in self.bus.bindings if b.target == target and b.scheme == "osc"]
        curve, span = (osc[0].curve, osc[0].output) if osc else ("linear", None)
        if param.trigger:  # a pad fires the trigger with the value touched: bookmark 3, cue 12
            span = (value, value) if param.maximum > 1 else None
            mapping = MidiMapping(source, target, span, "linear", False, "jump")
        else:
            mapping = MidiMapping(source, target, span, curve, False, "soft")
        controller = controller_name(self.controller() or "midi")
        where = f"{self.path}: [{_quote(controller)}].{_quote(source)}"
        try:
            check(mapping, self.bus.params, where)
            self.bus.rebind(source, [mapping.binding(where)])
        except ControlError as e:
            log.error("MIDI learn: %s", e)
            return
        self.learned.append((source, target))
        try:
            tables = read(self.path)
            tables.setdefault(controller, {})[source] = mapping
            write(self.path, tables)
            self.error = ""
        except (ControlError, OSError) as e:  # a broken file is never overwritten: the mapping lives for this run
            self.error = str(e)
            log.error("MIDI learn: %s -> %s works for this run but was not saved: %s", source, target, e)
            return
        log.info("MIDI learn: %s -> %s (%s), saved in %s", source, target, controller, self.path)
