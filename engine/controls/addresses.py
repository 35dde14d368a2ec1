"""The `/masq/...` OSC address space: the params a default show declares and the bindings it uses.

One table (`ADDRESSES`) feeds the default bindings, the shipped controller document
(`assets/controllers/masquerade-osc.json`, regenerated with `python -m engine.controls.addresses`) and
the test that keeps `docs/osc.md` honest, so the three cannot drift apart.

Slot, cue and keyframe numbers count from 1, as on a lighting desk: 0 is a button's release and does
nothing. Faders send 0..1.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from engine.controls.bus import Binding, Param

PREFIX = "/masq"
FILTER_PATTERN = "/masq/filter/<name>/<param>"
DIRECTION_PATTERN = "/masq/direction/<i>"


@dataclass(frozen=True)
class Address:
    address: str
    param: Param
    args: str  # OSC type tags the address expects: "f" a fader, "i" a number, "" a button (or 1 / 0)
    input: tuple[float, float]
    curve: str
    about: str


def _fader(address, name, default, lo, hi, curve, smoothing, about) -> Address:
    return Address(address, Param(name, default, lo, hi, smoothing), "f", (0.0, 1.0), curve, about)


def _button(address, name, about) -> Address:
    return Address(address, Param(name, 0.0, 0.0, 1.0, trigger=True), "", (0.0, 1.0), "linear", about)


def _number(address, name, top, about) -> Address:
    return Address(address, Param(name, 1.0, 1.0, float(top), trigger=True), "i", (1.0, float(top)), "linear",
                   about)


ADDRESSES: tuple[Address, ...] = (
    _fader("/masq/walk/speed", "walk.speed", 1.0, 0.125, 8.0, "exp", 0.3,
           "pace of the walk; exp: the fader's middle is 1x, the ends 1/8x and 8x"),
    _fader("/masq/walk/energy", "walk.energy", 0.0, 0.0, 1.0, "linear", 0.25,
           "how far the walk strays from its path between keyframes"),
    _fader("/masq/walk/truncation", "walk.truncation", 1.0, 0.0, 1.0, "linear", 0.2,
           "psi: 1 = full variety, 0 = the model's average image"),
    _button("/masq/keyframe/next", "walk.next_keyframe", "jump to the next keyframe"),
    _button("/masq/keyframe/prev", "walk.prev_keyframe", "jump to the previous keyframe"),
    _number("/masq/keyframe/index", "walk.keyframe", 64, "jump to keyframe N (1 = the first)"),
    _number("/masq/bookmark/save", "bookmark.save", 64, "save the current latent in slot N"),
    _number("/masq/bookmark/recall", "bookmark.recall", 64, "glide to the latent saved in slot N"),
    _number("/masq/scene/cue", "scene.cue", 999, "go to the show's cue N"),
    _number("/masq/scene/go", "scene.go", 999, "go to scene N (from 1), or send its name; its transition plays"),
    _button("/masq/scene/next", "scene.next", "go to the next scene (after the last, the first)"),
    _button("/masq/tempo/tap", "tempo.tap", "tap tempo: two or more taps set the beat; the beat lands on the tap"),
    Address("/masq/tempo/bpm", Param("tempo.bpm", 120.0, 20.0, 400.0), "f", (20.0, 400.0), "linear",
            "set the tempo in BPM (the beat count carries on)"),
    _fader("/masq/style/mix", "style.mix", 0.0, 0.0, 1.0, "linear", 0.2,
           "style mixing: how much of the second latent the mixed layers take (shows with style.mix_seed)"),
    Address("/masq/style/class", Param("style.class", 0.0, 0.0, 1e4), "f", (0.0, 1e4), "linear",
            "class N of a conditional model (from 0); a fraction lies between two classes"),
    _fader("/masq/style/translate_x", "style.translate_x", 0.0, -1.0, 1.0, "linear", 0.1,
           "StyleGAN3: slide the picture right (+) or left, in image widths; the fader's middle is none"),
    _fader("/masq/style/translate_y", "style.translate_y", 0.0, -1.0, 1.0, "linear", 0.1,
           "StyleGAN3: slide the picture down (+) or up, in image widths; the fader's middle is none"),
    _fader("/masq/style/rotate", "style.rotate", 0.0, -180.0, 180.0, "linear", 0.1,
           "StyleGAN3: turn the picture, degrees counter-clockwise; the fader's middle is none"),
    _fader("/masq/output/trail", "output.trail", 0.0, 0.0, 0.95, "linear", 0.1,
           "video feedback: how much of the previous presented frame each frame keeps (0 off)"),
    _fader("/masq/output/trail_zoom", "output.trail_zoom", 1.0, 0.8, 1.25, "exp", 0.1,
           "zoom of the fed-back frame per frame; exp: the fader's middle is 1 (none), above grows outward"),
    _fader("/masq/output/trail_rotate", "output.trail_rotate", 0.0, -10.0, 10.0, "linear", 0.1,
           "rotation of the fed-back frame in degrees per frame, counter-clockwise; the middle is none"),
    _fader("/masq/output/trail_fade", "output.trail_fade", 1.0, 0.0, 1.0, "linear", 0.1,
           "brightness of the fed-back frame per frame (1 keeps its colour, lower fades trails to black)"),
    _fader("/masq/camera/mirror", "camera.mirror", 0.0, 0.0, 1.0, "linear", 0.2,
           "mirror mode: 0 the generator's image, 1 the camera's, between a blend (shows with a camera)"),
)


def default_params() -> list[Param]:
    """The params every show has (filters add `filter.<name>.<param>` ones of their own)."""
    return [a.param for a in ADDRESSES]


def filter_address(param: Param) -> str | None:
    """`filter.bloom.amount` -> `/masq/filter/bloom/amount`, `direction.3` -> `/masq/direction/3` (None for
    a name that is neither)."""
    parts = param.name.split(".")
    if len(parts) == 2 and parts[0] == "direction" and parts[1].isdigit():
        return f"{PREFIX}/direction/{parts[1]}"
    if len(parts) != 3 or parts[0] != "filter" or not all(parts):
        return None
    return f"{PREFIX}/filter/{parts[1]}/{parts[2]}"


def default_bindings(params: list[Param] | None = None, where: str = "default OSC bindings") -> list[Binding]:
    """The `/masq` bindings for these params: the fixed table, plus a 0..1 fader for each filter param."""
    params = default_params() if params is None else params
    names = {p.name for p in params}
    rows = [Binding(f"osc:{a.address}", a.param.name, a.input, a.curve, where=f"{where} ({a.address})")
            for a in ADDRESSES if a.param.name in names]
    for p in params:
        address = filter_address(p)
        if address is not None and not p.trigger:
            rows.append(Binding(f"osc:{address}", p.name, where=f"{where} ({address})"))
    return rows


def address_space() -> dict:
    """The document a controller (TouchOSC, Open Stage Control, a patch) is built from."""
    rows = [{"address": a.address, "args": a.args, "input": list(a.input), "curve": a.curve,
             "param": a.param.name, "range": [a.param.minimum, a.param.maximum], "default": a.param.default,
             "trigger": a.param.trigger, "about": a.about} for a in ADDRESSES]
    rows.append({"address": FILTER_PATTERN, "args": "f", "input": [0.0, 1.0], "curve": "linear",
                 "param": "filter.<name>.<param>", "range": "the filter param's own", "default": None,
                 "trigger": False, "about": "any filter parameter the show's filters declare"})
    rows.append({"address": DIRECTION_PATTERN, "args": "f", "input": [0.0, 1.0], "curve": "linear",
                 "param": "direction.<i>", "range": "-range..+range standard deviations (0.5 is none)",
                 "default": 0.5, "trigger": False,
                 "about": "move along discovered direction i (shows with [latent] directions = N)"})
    return {
        "name": "Masquerade OSC",
        "version": 1,
        "transport": "OSC 1.0 over UDP",
        "port": 9000,
        "feedback": "faders follow changes made elsewhere when the show sets [osc] feedback = \"host:port\"",
        "buttons": "send 1 (or no argument) on press; 0, a release, is ignored",
        "numbers": "slots, cues and keyframes count from 1",
        "addresses": rows,
    }


def address_space_json() -> str:
    return json.dumps(address_space(), indent=2) + "\n"


if __name__ == "__main__":  # python -m engine.controls.addresses > assets/controllers/masquerade-osc.json
    sys.stdout.write(address_space_json())
