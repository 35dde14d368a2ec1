"""Controller layouts (engine/controllers): each file is read back the way its app reads it, and every address
of the address space (and of a show's filters, directions and cues) has a control sending the right range.

- TouchOSC: a `.tosc` is zlib-compressed XML (`<lexml>` of `<node>`s); the OSC message of a control is
  `<messages><osc>` with `<path>` and `<arguments>` partials (a VALUE partial scales the control's x into
  scaleMin..scaleMax; a CONSTANT partial sends its text, converted).
- Open Stage Control: the loader (src/client/managers/session/session.mjs, parser.mjs) takes
  `{"version", "type": "session", "content": root}`, runs converters for files older than their version,
  and for each widget drops every prop its type does not declare and turns an unknown type into a fader.
  `OSC_PROPS` lists what each type declares (from src/client/widgets/**), so a prop the app would drop
  fails here instead of vanishing there.
"""

import json
import re
import xml.etree.ElementTree as ET
import zlib

import pytest

from engine import show as shows
from engine.cli import main
from engine.controllers import layout
from engine.controls.addresses import address_space, default_bindings, default_params
from engine.controls.bus import Binding

# --- Open Stage Control: the props each widget type declares (Widget base + the type's own) ---
_WIDGET = {"lock", "type", "id", "visible", "interaction", "comments", "left", "top", "width", "height", "expand",
           "colorText", "colorWidget", "colorStroke", "colorFill", "alphaStroke", "alphaFillOff", "alphaFillOn",
           "lineWidth", "borderRadius", "padding", "html", "css", "value", "default", "linkId", "address",
           "preArgs", "typeTags", "decimals", "target", "ignoreDefaults", "bypass", "onCreate", "onValue"}
_PANEL = _WIDGET | {"variables", "traversing", "colorBg", "layout", "justify", "gridTemplate", "contain", "scroll",
                    "innerPadding", "tabsPosition", "widgets", "tabs", "onTouch"}
OSC_PROPS = {
    "root": _PANEL - {"visible", "left", "top", "expand", "colorFill", "colorStroke", "alphaStroke",
                      "alphaFillOff", "lineWidth"} | {"hideMenu", "onPreload"},
    "tab": _PANEL - {"left", "top", "width", "height", "expand", "colorStroke", "alphaStroke", "alphaFillOff",
                     "alphaFillOn", "lineWidth"} | {"label"},
    "fader": _WIDGET | {"design", "knobSize", "colorKnob", "horizontal", "pips", "dashed", "gradient", "snap",
                        "touchZone", "spring", "doubleTap", "range", "logScale", "sensitivity", "steps", "origin",
                        "onTouch"},
    "button": _WIDGET | {"colorTextOn", "label", "vertical", "wrap", "on", "off", "mode", "doubleTap", "decoupled"},
    "text": _WIDGET - {"typeTags", "ignoreDefaults"} | {"vertical", "wrap", "align"},
}
CONVERTER_VERSIONS = ("0.49.12", "1.3.0", "1.6.2", "1.8.15", "1.13.2", "1.23.0", "1.24.2")  # session.mjs


def semver(text):
    return tuple(int(x) for x in re.match(r"(\d+)\.(\d+)\.(\d+)", text).groups())


def expected(show=None):
    """address -> (low, high) of what its control must send, from the bindings the receiver listens with."""
    from engine.show import control_params

    params = control_params(show) if show is not None else default_params()
    return {b.source[4:]: b.input for b in default_bindings(params)}


def write_show(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('name = "x"\n[latent]\ndirections = 3\n'
                    '[[filters]]\nkind = "grade"\nexposure = 1.5\n'
                    '[[cue]]\nnumber = 2\nname = "dawn <soft>"\n[[cue]]\nnumber = 7\nname = "storm"\n')
    return shows.load(path)


# --- reading the files back ---

def tosc_controls(path):
    """[(node type, name, address, trigger condition, [(partial type, conversion, value, lo, hi)], x default)]"""
    root = ET.fromstring(zlib.decompress(path.read_bytes()))
    assert root.tag == "lexml" and root.find("node") is not None
    out = []
    for node in root.iter("node"):
        name = next((p.findtext("value") for p in node.iterfind("properties/property")
                     if p.findtext("key") == "name"), None)
        x = next((v.findtext("default") for v in node.iterfind("values/value") if v.findtext("key") == "x"), None)
        for osc in node.iterfind("messages/osc"):
            assert osc.findtext("enabled") == "1" and osc.findtext("send") == "1"
            address = "".join(p.findtext("value") for p in osc.iterfind("path/partial"))
            assert all(p.findtext("type") == "CONSTANT" for p in osc.iterfind("path/partial"))
            args = [(p.findtext("type"), p.findtext("conversion"), p.findtext("value"), float(p.findtext("scaleMin")),
                     float(p.findtext("scaleMax"))) for p in osc.iterfind("arguments/partial")]
            out.append((node.get("type"), name, address, osc.findtext("triggers/trigger/condition"), args, x))
    return out


def tosc_ranges(path):
    """address -> [(low, high)] it can send: a fader's scale, a button's 0..1 press, a pad's constant."""
    ranges = {}
    for kind, _, address, condition, args, _ in tosc_controls(path):
        assert len(args) == 1, address
        ptype, conversion, value, lo, hi = args[0]
        if ptype == "VALUE":
            assert value == "x" and conversion == "FLOAT"
            ranges.setdefault(address, []).append((lo, hi))
        else:
            assert ptype == "CONSTANT" and conversion == "INTEGER" and kind == "BUTTON" and condition == "RISE"
            ranges.setdefault(address, []).append((int(value), int(value)))
    return ranges


def osc_widgets(data):
    """Walk a session as the loader does; checks every widget on the way; returns the leaf widgets."""
    assert data["type"] == "session" and isinstance(data["content"], dict)
    assert all(semver(data["version"]) > semver(v) for v in CONVERTER_VERSIONS), "old converters would run"
    root = data["content"]
    assert root["type"] == "root"
    leaves, ids = [], set()

    def walk(w, tab=False):
        kind = "tab" if tab else w.get("type")
        assert kind in OSC_PROPS, f"type {kind!r} unknown to this test (the app turns unknown types into faders)"
        dropped = set(w) - OSC_PROPS[kind]
        assert not dropped, f"{w.get('id')}: the app drops {sorted(dropped)}"
        assert w.get("id") and w["id"] not in ids, f"missing or shared id {w.get('id')!r} (shared ids are clones)"
        ids.add(w["id"])
        assert not (w.get("tabs") and w.get("widgets")), "a panel holds widgets or tabs, never both"
        for t in w.get("tabs", []):
            walk(t, tab=True)
        for c in w.get("widgets", []):
            walk(c)
        if kind not in ("root", "tab"):
            leaves.append(w)

    walk(root)
    return leaves


def check_ranges(ranges, want):
    """Every wanted address has a control; faders send exactly the input range; a press sends a value the
    binding accepts (a button 1, a pad a whole number inside the range)."""
    missing = sorted(set(want) - set(ranges))
    assert not missing, f"no control for {missing}"
    assert not set(ranges) - set(want), f"controls for unbound addresses {sorted(set(ranges) - set(want))}"
    for address, sends in ranges.items():
        lo, hi = want[address]
        for a, b in sends:
            assert (a, b) == (lo, hi) or (a == b and lo <= a <= hi) or (a, b) == (0, 1), (address, (a, b), (lo, hi))


# --- the tests ---

def test_the_address_space_is_what_the_layouts_cover():
    fixed = {row["address"] for row in address_space()["addresses"] if "<" not in row["address"]}
    assert set(expected()) == fixed
    assert layout.addresses(layout.pages()) == fixed
    assert [p.name for p in layout.pages()][:5] == ["walk", "style", "filters", "scenes", "bookmarks"]


@pytest.mark.parametrize("with_show", [False, True])
def test_touchosc_file_opens_and_covers_every_address(tmp_path, with_show):
    show = write_show(tmp_path) if with_show else None
    out = tmp_path / "masq.tosc"
    assert main(["controllers", "touchosc", "-o", str(out)] + (["--show", str(show.source)] if show else [])) == 0
    ranges = tosc_ranges(out)
    check_ranges(ranges, expected(show))
    controls = tosc_controls(out)
    speed = next(c for c in controls if c[2] == "/masq/walk/speed")
    assert speed[0] == "FADER" and speed[3] == "ANY" and float(speed[5]) == pytest.approx(0.5)  # 1x is the middle
    assert next(c for c in controls if c[2] == "/masq/keyframe/next")[3] == "RISE"  # press only
    if show:
        assert ranges["/masq/filter/grade/exposure"] == [(0.0, 1.0)]
        exposure = next(c for c in controls if c[2] == "/masq/filter/grade/exposure")
        assert float(exposure[5]) == pytest.approx((1.5 + 3) / 6)  # starts where the show starts
        assert {f"/masq/direction/{i}" for i in (1, 2, 3)} <= set(ranges)
        assert sorted(r for r, _ in ranges["/masq/scene/cue"]) == [2, 7]  # the show's cues, not 1..16
    import py2tosc  # the library's own reader and validator agree

    assert not [i for i in py2tosc.load(str(out)).validate() if i.level == "error"]


@pytest.mark.parametrize("with_show", [False, True])
def test_open_stage_control_session_loads_and_covers_every_address(tmp_path, with_show):
    show = write_show(tmp_path) if with_show else None
    out = tmp_path / "masq.json"
    assert main(["controllers", "open-stage-control", "-o", str(out)]
                + (["--show", str(show.source)] if show else [])) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    leaves = osc_widgets(data)
    tabs = [t["label"] for t in data["content"]["tabs"]]
    assert tabs[:5] == ["Walk", "Style", "Filters", "Scenes", "Bookmarks"]
    ranges = {}
    for w in leaves:
        if w["type"] == "fader":
            assert w["typeTags"] == "f" and w["range"]["min"] <= w["default"] <= w["range"]["max"]
            ranges.setdefault(w["address"], []).append((w["range"]["min"], w["range"]["max"]))
        elif w["type"] == "button":
            assert w["mode"] == "tap" and w["typeTags"] == "i" and isinstance(w["on"], int) and w["on"] >= 1
            pad = w["id"][-1].isdigit() and w["address"] in ("/masq/scene/cue", "/masq/bookmark/save",
                                                            "/masq/bookmark/recall", "/masq/keyframe/index")
            ranges.setdefault(w["address"], []).append((w["on"], w["on"]) if pad else (0, 1))
        else:
            assert w["type"] == "text"
    check_ranges(ranges, expected(show))
    if show:
        assert ranges["/masq/filter/grade/exposure"] == [(0.0, 1.0)]
        cues = [w for w in leaves if w.get("address") == "/masq/scene/cue"]
        assert [(w["on"], w["label"]) for w in cues] == [(2, "dawn <soft>"), (7, "storm")]
    else:  # the empty filters page says how to fill it
        assert "--show" in data["content"]["tabs"][2]["widgets"][0]["default"]


def test_every_fader_range_drives_its_param_end_to_end(tmp_path):
    """The two ends of each fader, through the receiver's own binding, reach the two ends of the param."""
    show = write_show(tmp_path)
    from engine.show import control_params

    params = {p.name: p for p in control_params(show)}
    bindings = {b.source[4:]: b for b in default_bindings(list(params.values()))}
    for page in layout.pages(show):
        for c in page.controls:
            b: Binding = bindings[c.address]
            p = params[b.target]
            if c.kind == "fader":
                assert b.map(c.low, p) == pytest.approx(p.minimum) and b.map(c.high, p) == pytest.approx(p.maximum)
                assert b.map(c.default, p) == pytest.approx(p.default)


def test_a_bad_show_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[latent]\ndirections = \"three\"\n")
    assert main(["controllers", "touchosc", "-o", str(tmp_path / "m.tosc"), "--show", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.toml" in err and "latent.directions" in err
    assert not (tmp_path / "m.tosc").exists()
