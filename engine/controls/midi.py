"""MIDI input (mido): controllers, notes, pitch bend and program changes as `midi:*` bus sources.

Channels count from 1 (as printed on controllers), values are scaled to 0..1, so the default binding input
`[0, 1]` fits every source:
- `midi:cc/<channel>/<cc>`: value / 127;
- `midi:note/<channel>/<note>`: velocity / 127 on note-on, 0 on note-off (or note-on with velocity 0), so one
  source drives a fader-like param (held while pressed) or fires a trigger (on press; 0 is a release);
- `midi:pitch/<channel>`: pitch bend, -1..1;
- `midi:program/<channel>`: program number + 1 (1..128, like a cue number).

`events_of(message)` is the whole mapping, a pure function; `MidiInput` reads a port by name (a part of
the name is enough: ALSA adds client numbers) through mido's default backend (python-rtmidi), and is lost,
with the reason, where there is no backend, no MIDI system (no /dev/snd/seq in a container) or no such
port; it notices an unplugged port by its name disappearing. `MidiFile` plays a `.mid` file in show time.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import mido

from engine.controls.source import DeviceLost, Source

PORT_CHECK_SECONDS = 2.0  # how often an open port's name is looked for in the system's list


def events_of(message: mido.Message) -> list[tuple[str, float]]:
    """A MIDI message -> the (source, value) pairs it posts (none for clock, sysex and the like)."""
    kind = message.type
    if kind == "control_change":
        return [(f"midi:cc/{message.channel + 1}/{message.control}", message.value / 127)]
    if kind == "note_on":
        return [(f"midi:note/{message.channel + 1}/{message.note}", message.velocity / 127)]
    if kind == "note_off":
        return [(f"midi:note/{message.channel + 1}/{message.note}", 0.0)]
    if kind == "pitchwheel":
        return [(f"midi:pitch/{message.channel + 1}", message.pitch / (8192 if message.pitch < 0 else 8191))]
    if kind == "program_change":
        return [(f"midi:program/{message.channel + 1}", float(message.program + 1))]
    return []


def input_names() -> list[str]:
    """The MIDI input ports the backend sees; raises DeviceLost with the reason where there is no backend."""
    try:
        return list(mido.get_input_names())
    except Exception as e:  # ImportError (no python-rtmidi), a backend's SystemError (no ALSA sequencer)
        raise DeviceLost(f"no MIDI backend ({type(e).__name__}: {e}); pip install python-rtmidi and "
                         f"give the process access to /dev/snd/seq") from None


def find_port(wanted: str | None, names: list[str]) -> str:
    """The port whose name is `wanted`, or contains it (case-insensitively); None: the first port."""
    if not names:
        raise DeviceLost("no MIDI input ports")
    if wanted is None:
        return names[0]
    if wanted in names:
        return wanted
    near = [n for n in names if wanted.lower() in n.lower()]
    if not near:
        raise DeviceLost(f"no MIDI input named {wanted!r} (ports: {', '.join(names)})")
    return near[0]


class _Poster:
    """What `MidiInput` and `MidiFile` share: turn a message into posts and count them."""

    kind = "midi"

    def handle(self, message: mido.Message, at: float | None = None) -> int:
        """Post what `message` means; returns how many events were posted. Safe to call without a port."""
        events = events_of(message)
        for source, value in events:
            self.post(source.partition(":")[2], value, continuous=False, at=at)
        self._count_read()
        return len(events)


class MidiInput(_Poster, Source):
    """A MIDI input port by name (None: the first one). Never raises after `start()`; where a port cannot be
    opened `state` is "lost" and `reason` says why (no backend, no port of that name). A lost port releases
    its sources (a fader's position is unknown until it moves again), rather than easing them."""

    def __init__(self, bus, port: str | None = None, *, opener: Callable[[str], object] | None = None,
                 **source_options):
        source_options.setdefault("decay", 0.0)
        super().__init__(bus, **source_options)
        self.port_name, self.opened_name = port, None
        self._opener = opener or mido.open_input
        self._port = None
        self._next_check = 0.0

    def _open(self) -> None:
        self.opened_name = find_port(self.port_name, input_names())
        try:
            self._port = self._opener(self.opened_name)
        except Exception as e:
            raise DeviceLost(f"cannot open MIDI input {self.opened_name!r}: {e}") from None
        self._next_check = self.clock() + PORT_CHECK_SECONDS

    def _step(self) -> bool:
        got = False
        for message in self._port.iter_pending():  # never blocks
            self.handle(message)
            got = True
        if not got:
            if self.clock() >= self._next_check:
                self._next_check = self.clock() + PORT_CHECK_SECONDS
                if self.opened_name not in input_names():
                    self.reason = f"{self.opened_name} was unplugged"
                    return False
            self._wait(0.002)
        return True

    def _close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None

    def _rest(self, wait: float) -> bool:  # lost: let go of every control at once
        for source in self._posted:
            self.bus.release(source)
        return super()._rest(wait)


def file_events(path) -> list[tuple[float, str, float]]:
    """A `.mid` file -> [(seconds from its start, source, value)], tempo changes applied (mido's playback)."""
    out, t = [], 0.0
    for message in mido.MidiFile(os.fspath(path)):
        t += message.time
        if not message.is_meta:
            out += [(t, source, value) for source, value in events_of(message)]
    return out


class MidiFile(_Poster, Source):
    """A `.mid` file as a source, paced in show time: `show_time()` (the loop's clock; by default seconds
    since `start()`) says where the show is; each event is posted when it is due. With a `show_time` given,
    events carry their exact show time (`at`), so a frame sees them at the same `t` live and offline. At the
    end the file is lost ("end of file") and played again after the back-off, or at once with `loop`."""

    def __init__(self, bus, path, *, show_time: Callable[[], float] | None = None, loop: bool = False,
                 **source_options):
        source_options.setdefault("decay", 0.0)
        super().__init__(bus, **source_options)
        self.path, self.loop, self.show_time = path, loop, show_time
        self._events: list[tuple[float, str, float]] = []
        self._i = 0
        self._t0 = 0.0

    def _now(self) -> float:
        return self.show_time() if self.show_time is not None else self.clock()

    def _open(self) -> None:
        if not os.path.exists(self.path):
            raise DeviceLost(f"{self.path}: no such file")
        try:
            self._events = file_events(self.path)
        except (OSError, ValueError, EOFError) as e:  # mido raises these on a broken file
            raise DeviceLost(f"{self.path}: not a MIDI file ({e})") from None
        self._i, self._t0 = 0, self._now()

    def _step(self) -> bool:
        if self._i >= len(self._events):
            if not self.loop or not self._events:
                self.reason = "end of file"
                return False
            self._i, self._t0 = 0, self._t0 + max(self._events[-1][0], 1e-3)
        when, source, value = self._events[self._i]
        due = self._t0 + when
        if self._now() < due:
            self._wait(min(0.005, due - self._now()))
            return True
        at = due if self.show_time is not None else None
        self.post(source.partition(":")[2], value, continuous=False, at=at)
        self._count_read()
        self._i += 1
        return True
