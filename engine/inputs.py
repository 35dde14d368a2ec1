"""A live run's inputs: the OSC receiver, OSCQuery, MIDI learn and the devices (microphone, camera, MIDI port,
DMX), opened from one show's settings and posting to one show's bus.

The loop opens them once (`open_inputs`); a kiosk switch (engine/switch.py) either points them at the
incoming show's bus (`point_at`: the same settings, nothing reopened, no gap) or, when the incoming show's
`[osc]`, `[camera]`, `[audio]`, `[midi]` or `[dmx]` differ (`settings`), closes them and opens the incoming
show's, so each show of a playlist is steered as its file says. Each device runs in its own thread, never
raises, and reports loss and reconnects.
"""

from __future__ import annotations

import logging
from dataclasses import astuple, dataclass, field
from pathlib import Path

from engine.controls import mirror as mirrors
from engine.errors import MasqueradeError
from engine.show import Show

log = logging.getLogger(__name__)


@dataclass
class Inputs:
    learn: object  # engine.controls.learn.Learn: off until asked
    receiver: object | None = None  # engine.controls.osc.Receiver, None when the show turns OSC off
    query: object | None = None  # the OSCQuery service, None when off
    devices: list = field(default_factory=list)  # started sources (camera, microphone, MIDI, DMX)
    mirror: object | None = None  # t -> the camera's picture (engine/controls/mirror.py), None without a camera
    osc_port: int | None = None  # the command line's --osc-port, which wins over every show's [osc] port
    key: tuple = ()  # the settings they were opened with (`settings`)

    def fit(self, show: Show) -> bool:
        """Whether `show` would open the same inputs (then a switch to it keeps these)."""
        return settings(show, self.osc_port) == self.key

    def point_at(self, bus) -> None:
        """Post to another show's bus from now on (a switch between shows with the same input settings)."""
        bus.observer = self.learn.observe  # MIDI learn watches the show's bus
        for thing in (self.receiver, self.query, self.learn, *self.devices):
            if thing is not None:
                thing.bus = bus

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.stop()
        if self.query is not None:
            self.query.stop()
        for device in self.devices:
            device.stop()


def settings(show: Show, osc_port: int | None = None) -> tuple:
    """What decides which inputs a show opens: two shows with equal settings share them across a switch."""
    return (astuple(show.osc), osc_port, astuple(show.camera), show.camera.device(show) if show.camera.enabled
            else None, astuple(show.audio), astuple(show.midi), astuple(show.dmx))


def open_inputs(show: Show, bus, osc_port: int | None, show_time, work_size: tuple[int, int]) -> Inputs:
    """Open and start `show`'s inputs on `bus`. `show_time`: the live clock's time (OSC bundles' timetags),
    None in lockstep runs; `work_size`: the size the camera's picture is kept at for mirror mode."""
    learn = make_learn(show, bus)
    receiver = start_osc(show, bus, osc_port, show_time, learn)
    inputs = Inputs(learn, receiver, start_query(show, bus, receiver), osc_port=osc_port, key=settings(show, osc_port))
    if show.audio.enabled and not show.audio.is_file(show):
        from engine.controls.audio import AudioSource

        inputs.devices.append(AudioSource(bus, None if show.audio.source == "default" else show.audio.source))
    if show.camera.enabled:
        from engine.controls.camera import Camera

        camera = Camera(bus, show.camera.device(show), loop=show.camera.loop,
                        mirror_width=max(320, 2 * max(work_size)))  # mirror: read at the work size
        inputs.mirror = mirrors.live(camera)
        inputs.devices.append(camera)
    if show.midi.port:
        from engine.controls.midi import MidiInput

        port = MidiInput(bus, None if show.midi.port == "any" else show.midi.port)
        inputs.devices.append(port)
        learn.controller = lambda: port.opened_name or show.midi.port  # learned under the port's name
    if show.dmx.enabled:  # Art-Net / sACN: a port in use is "lost" and retried, the show goes on
        from engine.controls.dmx import DmxInput

        inputs.devices.append(DmxInput.from_show(bus, show.dmx))
    for device in inputs.devices:
        device.start()
    return inputs


def make_learn(show: Show, bus):
    """MIDI learn for a live run, watching every post on the bus; it saves to the show's `[midi] mappings`
    file, else to `<show>.midi.toml` beside the show."""
    from engine.controls.learn import Learn

    if show.midi.mappings:
        path = show.resolve(show.midi.mappings)
    else:
        path = show.source.with_suffix(".midi.toml") if show.source else Path.cwd() / "show.midi.toml"
    learn = Learn(bus, path, show.midi.port or Path(show.midi.file).name or "midi")
    bus.observer = learn.observe
    return learn


def start_query(show: Show, bus, receiver):
    """OSCQuery (`[osc] query_port`), on the OSC receiver's host and allow list; None when off, or when its
    port cannot be opened (logged: the show goes on)."""
    from engine.controls.learn import COMMANDS
    from engine.controls.oscquery import Service

    if receiver is None or show.osc.query_port < 0:
        return None
    try:
        return Service(bus, receiver.port, show.osc.host, show.osc.query_port, show.osc.allow,
                       name=f"Masquerade {show.name}",
                       commands=[(a, "MIDI learn " + a.rpartition("/")[2]) for a in COMMANDS]).start()
    except MasqueradeError as e:
        log.error("OSCQuery is off for this run: %s", e)
        return None


def start_osc(show: Show, bus, port: int | None, show_time=None, learn=None):
    """The show's OSC receiver, started; None when the show turns OSC off. A port that cannot be
    opened is logged and the show goes on without OSC: a kiosk must not go dark for it. `learn`: a
    controls.learn.Learn that `/masq/learn/start` and `/stop` switch."""
    from engine.controls.learn import COMMANDS
    from engine.controls.osc import Receiver, parse_address, show_time_from_unix

    osc = show.osc
    if not osc.enabled:
        return None
    receiver = Receiver(bus, osc.host, osc.port if port is None else port, osc.allow, osc.max_per_second,
                        feedback=parse_address(osc.feedback) if osc.feedback else None,
                        feedback_per_second=osc.feedback_per_second, secret=osc.secret or None,
                        to_show_time=show_time_from_unix(show_time) if show_time else None,
                        names={"/masq/scene/go": {s.name: float(s.number) for s in show.scenes}}, echo=osc.echo,
                        commands={a: learn.command for a in COMMANDS} if learn is not None else None)
    try:
        receiver.start()
    except MasqueradeError as e:
        log.error("OSC is off for this run: %s", e)
        return None
    return receiver


