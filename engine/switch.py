"""The kiosk's show switch inside the running engine: a playlist step, attract mode on or off and a hot reload
become a cross-fade in the same process, so the wall never goes black (installation/README.md).

The channel is a file: the supervisor (which never imports torch) replaces a small JSON file atomically, and
the engine (`masquerade run --control FILE`) reads it five times a second:

    {"id": 7, "show": "/path/show.toml", "seconds": 2.0, "at": 0.0, "cue": null}

A new `id` is a request: play `show` from its show time `at` (and fire its cue `cue`, as `--start-at` and
`--cue` do), cross-fading over `seconds` (0: a cut). The engine answers in its heartbeat: `switch` (the id,
its state loading -> fading -> done | failed, the error, how long it took, the frames presented meanwhile and
the longest gap between two of them) and `switches` (done so far). A file rather than a socket or OSC: the
request is state (the show that should play), so nothing is lost when the engine is busy or restarting; the
show's `[osc]` settings (off, opened to the network) do not matter; only the kiosk's user can write the state
folder; and the answer rides the heartbeat the supervisor reads anyway.

The incoming show is checked as installation/kiosk/validate.py checks it (its file, its model and filters
built, here on the engine's own device, and one frame drawn and found finite) in a background thread while
the old show plays on; a show that fails leaves the old one playing, and the failure is in the heartbeat.
Each show keeps its own control bus and its own show time, so two shows' params never conflict (the same
param with other ranges is fine): the incoming show reads its own bus from the first frame of the cross-fade,
and at its end the inputs (OSC receiver, OSCQuery, MIDI learn, camera, audio, MIDI, DMX: engine/inputs.py) are
re-pointed at that bus, or, when the incoming show's input settings differ (another OSC port, a camera), closed
and opened again with its settings, off the producer's thread; the old show, its pipelines and its bus are
dropped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from engine import frame_path, scenes, timeline
from engine.frame import Frame, Tick, to_uint8_hwc
from engine.pipeline import make_bus

log = logging.getLogger(__name__)

POLL = 0.2  # seconds between reads of the control file


@dataclass(frozen=True)
class Request:
    id: str
    show: Path
    seconds: float  # the cross-fade; 0: a cut
    at: float = 0.0  # the incoming show's time on its first frame
    cue: int | None = None  # its scene cue fired on that frame


def read_request(path: Path) -> Request | None:
    """The control file's request; None when there is no file, or it holds no request (logged)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        seconds, at, cue = float(data.get("seconds", 0.0)), float(data.get("at", 0.0)), data.get("cue")
        request = Request(str(data["id"]), Path(data["show"]), seconds, at, None if cue is None else int(cue))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        log.warning("control file %s: not a show request (%s); ignored", path, e)
        return None
    if not (math.isfinite(request.seconds) and 0 <= request.seconds <= 60 and math.isfinite(at) and at >= 0):
        log.warning("control file %s: seconds must be 0..60 and at >= 0, got %s; ignored", path, data)
        return None
    return request


@dataclass
class Playing:
    show: object  # engine.show.Show
    source: object  # its Pipeline or ScenePlayer
    controls: timeline.Controls
    offset: float = 0.0  # the show's own time = the loop's time - offset


def scene_of(source) -> dict | None:
    """The scene a ScenePlayer plays ({"number", "name"}, and "failed": the scenes that could not be built, each
    {"number", "name", "error"}, when there are any); None for a show without scenes."""
    if not isinstance(source, scenes.ScenePlayer):
        return None
    scene = source.show.scenes[source.current]
    playing = {"number": scene.number, "name": scene.name}
    failed = [{"number": source.show.scenes[i].number, "name": source.show.scenes[i].name, "error": why}
              for i, why in sorted(source.failed.items())]
    return {**playing, "failed": failed} if failed else playing


class Switcher:
    """The live loop's frame source in a kiosk engine: the Pipeline interface (`generate`, `times`,
    `work_size`, `device`, `controls`, `mirror`, `link`) over the show playing and, while a switch runs, the
    incoming one. `generate` runs on the producer's thread, the loading on a thread of its own; the loop
    calls `presented()` after each frame it shows (the switch's frame gaps) and reads `report()` into the
    heartbeat."""

    def __init__(self, show, source, controls: timeline.Controls, control: Path, device: str, feeds=None):
        self.now = Playing(show, source, controls)
        self.control, self.device_name, self.feeds = control, device, feeds or (lambda show: [])
        self.times, self.device = source.times, source.device
        self.inputs = None  # the run's engine.inputs.Inputs (set by the loop): re-pointed or reopened by a switch
        self.reopen = None  # (show, bus) -> Inputs: opens a show's inputs (set by the loop)
        self.incoming: Playing | None = None  # loaded, waiting for its first frame or cross-fading
        self.request: Request | None = None  # the switch in progress
        self._last: Request | None = None  # the last request acted on
        self.fade_from: float | None = None  # loop time of the cross-fade's first frame
        self.switches = 0
        self.state: dict | None = None  # the heartbeat's `switch`
        self._mirror = self._link = None
        self._live = False  # warm_up was called: each show that takes over warms its compiled generator up
        self._lock = threading.Lock()
        self._shown, self._gap = None, 0.0  # when the last frame was presented; the longest gap since a heartbeat
        self._measure: dict | None = None  # {"since", "last", "gap", "frames", "done"}: frames while a switch runs
        first = read_request(control)
        self._seen = first.id if first else None  # a request left from before this engine is not acted on
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="masquerade-switch", daemon=True)
        self._thread.start()

    # --- the Pipeline interface ---

    show = property(lambda self: self.now.show)
    controls = property(lambda self: self.now.controls)
    work_size = property(lambda self: self.now.source.work_size)

    @property
    def mirror(self):
        return self._mirror

    @mirror.setter
    def mirror(self, value) -> None:
        self._mirror = self.now.source.mirror = value

    @property
    def link(self):
        return self._link

    @link.setter
    def link(self, value) -> None:
        self._link = self.now.source.link = value

    def warm_up(self) -> None:
        """Live: the playing show's compiled generator warms up in the background (Pipeline.warm_up), and so
        does each show a switch brings in, once it has taken over (not during the cross-fade, where two
        shows already share the CPU)."""
        self._live = True
        self.now.source.warm_up()

    def generate(self, tick: Tick) -> Frame:
        with self._lock:
            now, incoming, request = self.now, self.incoming, self.request
            if incoming is not None and self.fade_from is None:  # loaded: the cross-fade starts on this frame
                self.fade_from, incoming.offset = tick.t, tick.t - request.at
                self._say("fading")
            fade_from = self.fade_from
        if incoming is None:
            frame = now.source.generate(Tick(tick.index, tick.t - now.offset))
            return Frame(tick, frame.image, frame.rgb)
        u = (tick.t - fade_from) / request.seconds if request.seconds > 0 else 1.0
        try:
            b = incoming.source.generate(Tick(tick.index, tick.t - incoming.offset))
        except Exception as e:  # noqa: BLE001 - the incoming show fails mid-fade: the old one plays on
            self._fail(e)
            frame = now.source.generate(Tick(tick.index, tick.t - now.offset))
            return Frame(tick, frame.image, frame.rgb)
        if u >= 1.0:
            self._finish(incoming)
            return Frame(tick, b.image, b.rgb)
        a = now.source.generate(Tick(tick.index, tick.t - now.offset))
        with torch.inference_mode():
            o = now.show.output
            size = (a.image.shape[-1], a.image.shape[-2])
            image = scenes.blend(a.image, frame_path.fit(b.image, size, o.fit, o.background), max(u, 0.0),
                                 scenes.Transition("crossfade", request.seconds))  # [1, 3, H, W]
            return Frame(tick, image, to_uint8_hwc(image))

    # --- the loop's side ---

    def presented(self) -> None:
        """A frame was shown: the gap since the one before (the heartbeat's `longest_gap_ms`, since the last
        one); while a switch runs, also counted for it."""
        now = time.monotonic()
        if self._shown is not None:
            self._gap = max(self._gap, now - self._shown)
        self._shown = now
        m = self._measure
        if m is None:
            return
        m["gap"], m["last"] = max(m["gap"], now - m["last"]), now
        m["frames"] += 1
        if m["done"] is not None and self.state is not None:
            self._say(m["done"], seconds=round(now - m["since"], 3), frames=m["frames"],
                      longest_gap_ms=round(1000 * m["gap"], 1))
            self._measure = None

    def compositor_for(self, ctx, size, frame, old):
        """A compositor for `frame`'s size (the incoming show's work size differs); the old one released."""
        from engine.compositor import Compositor

        old.release()
        o = self.show.output
        return Compositor(ctx, size, (frame.rgb.shape[1], frame.rgb.shape[0]), fit=o.fit, upscale=o.upscale,
                          background=o.background)

    def local(self, tick: Tick) -> Tick:
        """`tick` in the playing show's own time (what the heartbeat reports, and a restart resumes)."""
        return Tick(tick.index, tick.t - self.now.offset)

    def report(self) -> dict:
        """The heartbeat's part: the control file, switches done, the last switch, the scene playing, and the
        longest gap between presented frames since the last heartbeat."""
        gap, self._gap = self._gap, 0.0
        return {"control": str(self.control), "switches": self.switches, "switch": self.state,
                "scene": scene_of(self.now.source), "longest_gap_ms": round(1000 * gap, 1)}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    # --- switching ---

    def _say(self, state: str, **more) -> None:
        request = self.request or self._last
        self.state = {**(self.state if self.state and self.state.get("id") == request.id else {}),
                      "id": request.id, "show": str(request.show), "state": state, **more}

    def _watch(self) -> None:
        try:  # loading a show gives way to the frames on screen (Linux: nice is per thread)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (OSError, AttributeError):
            pass
        while not self._stop.wait(POLL):
            if self.request is not None or self._measure is not None:
                continue  # one switch at a time: a newer request is read when this one is over and reported
            request = read_request(self.control)
            if request is None or request.id == self._seen:
                continue
            self._seen, self._last, self.request = request.id, request, request
            started = time.monotonic()
            self._measure = {"since": started, "last": started, "gap": 0.0, "frames": 0, "done": None}
            self._say("loading", seconds=None, frames=None, longest_gap_ms=None, error=None)
            log.info("switching to %s (%g s cross-fade): loading it while the show plays on", request.show,
                     request.seconds)
            try:
                incoming = self._load(request)
            except Exception as e:  # noqa: BLE001 - whatever fails to load, the old show plays on
                self._fail(e)
                continue
            with self._lock:
                self.incoming = incoming

    def _fail(self, error: BaseException) -> None:
        """The switch in progress is over: the incoming show failed (to load, or to draw while fading in)."""
        why = " ".join(str(error).split())[:500] or type(error).__name__
        with self._lock:
            request, self.incoming, self.fade_from, self.request = self.request, None, None, None
        log.error("show switch to %s refused, the show goes on: %s", request.show, why)
        if self._measure is not None:
            self._measure["done"] = "failed"
        self._say("failed", error=why)

    def _load(self, request: Request) -> Playing:
        """The incoming show, checked as the kiosk's validator checks it (its file, model and filters built,
        one frame drawn and finite), on the engine's device, off the render thread."""
        from engine import show as shows

        show = shows.load(request.show)
        if not show.model_path.is_file():
            raise shows.ShowError(f"{request.show}: model.path: {show.model_path}: no such model file")
        controls = timeline.Controls(show, make_bus(show), feeds=self.feeds(show))
        if request.cue is not None:
            controls.bus.post("osc:/masq/scene/cue", float(request.cue))
        source = scenes.build(show, self.device_name, controls, background=True)
        source.times = self.times  # the stage times go on in one table
        for pipeline in getattr(source, "pipelines", ()):
            if pipeline is not None:
                pipeline.times = self.times
        source.mirror, source.link = self._mirror, self._link
        frame = source.generate(Tick(0, request.at))
        if not bool(torch.isfinite(frame.image).all()):
            raise shows.ShowError(f"{request.show}: model {show.model_path.name}: its first frame is not finite "
                                  "(NaN or inf): a corrupt model?")
        return Playing(show, source, controls)

    def _reopen(self, incoming: Playing) -> None:
        """The incoming show's inputs differ from the running ones (another OSC port, a camera, a MIDI port):
        close those and open its own, off the producer's thread (closing a receiver waits for its thread)."""
        old = self.inputs
        log.info("%s opens other inputs ([osc], [camera], [audio], [midi] or [dmx]): reopening them",
                 incoming.show.name)
        old.close()
        new = self.reopen(incoming.show, incoming.controls.bus)
        self._mirror = new.mirror
        if self.now is incoming:
            incoming.source.mirror = new.mirror
        self.inputs = new

    def _finish(self, incoming: Playing) -> None:
        """The end of the cross-fade (on the producer's thread): the incoming show is the show."""
        with self._lock:
            old, self.now, self.incoming, self.fade_from = self.now, incoming, None, None
            request, self.request = self.request, None
        if self.inputs is not None and self.reopen is not None and not self.inputs.fit(incoming.show):
            threading.Thread(target=self._reopen, args=(incoming,), name="masquerade-inputs", daemon=True).start()
        elif self.inputs is not None:
            self.inputs.point_at(incoming.controls.bus)
        self.switches += 1
        if self._live:
            incoming.source.warm_up()
        if self._measure is not None:
            self._measure["done"] = "done"
        log.info("now playing %s (switch %d)", request.show, self.switches)
        old.source.cool_down()  # a compile of its model still waiting its turn is not wanted now
        old.source = old.controls = None  # dropped: its pipelines and bus go with it
