"""Record a live set's control events and replay them: the same show + recording = the same frames.

The bus appends every event it applies, with the show time it applied it at, to `bus.recording`. A
`Replay` is an input like any other: it posts those events back with their times, so a fresh bus stepped
through the same show times yields equal snapshots, whatever the wall clock did during the live set.
(Exact for strictly increasing frame times; a paused clock repeats `t`, and replay may then apply an
event a frame earlier than live did, at the same show time.)

File format: JSON lines, one event per line, `{"t": 12.4, "source": "osc:/masq/walk/speed", "value": 0.5}`
(`"value": null` is a source letting go). JSON floats round-trip exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from engine.controls.bus import Bus, ControlError, Event


class Recording:
    def __init__(self, events=()):
        self.events: list[Event] = list(events)

    def append(self, event: Event) -> None:
        self.events.append(event)

    def __len__(self) -> int:
        return len(self.events)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        events = list(self.events)  # the loop may append while we write
        with path.open("w", encoding="utf-8") as f:
            for e in events:
                f.write(json.dumps({"t": e.t, "source": e.source, "value": e.value}) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        path = Path(path)
        if not path.is_file():
            raise ControlError(f"{path}: no such recording")
        events = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                t, source, value = row["t"], row["source"], row["value"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ControlError(f"{path}:{number}: not an event line ({e})") from None
            ok_value = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                         and math.isfinite(value))
            if not isinstance(source, str) or not isinstance(t, (int, float)) or not ok_value:
                raise ControlError(f"{path}:{number}: expected t (number), source (string), value (number or "
                                   f"null), got {line.strip()!r}")
            events.append(Event(float(t), source, None if value is None else float(value)))
        return cls(events)


class Replay:
    """Feeds a recording back into a bus; call `feed(bus, t)` before `bus.snapshot(t)` each frame."""

    def __init__(self, recording: Recording):
        self._events = sorted(recording.events, key=lambda e: e.t)  # stable: same-time events keep their order
        self._next = 0

    @property
    def done(self) -> bool:
        return self._next >= len(self._events)

    def feed(self, bus: Bus, until: float) -> int:
        """Post every event up to show time `until` (with its own time, so the bus applies it exactly then)."""
        start = self._next
        while self._next < len(self._events) and self._events[self._next].t <= until:
            e = self._events[self._next]
            if e.value is None:
                bus.release(e.source, at=e.t)
            else:
                bus.post(e.source, e.value, at=e.t)
            self._next += 1
        return self._next - start
