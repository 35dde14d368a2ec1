"""What a controller layout holds, whatever app it is for: pages of faders, buttons and pads, each with the
OSC address it sends and the range of what it sends.

The pages are derived from the show's OSC bindings (`engine.controls.addresses.default_bindings`), the
same rows the receiver listens with, so a layout cannot send an address the engine does not know or a
range it does not expect: a fader sends its binding's `input` range (0..1 for most, 20..400 BPM for
`/masq/tempo/bpm`), a button sends 1 on press, and a number address (slot, cue, keyframe) is a row of
pads that each send one whole number, because a fader dragged across cue numbers would fire every cue on
its way. Curves (`exp` for speed) stay in the engine: the controller sends the raw position.

Without a show the layout holds the fixed `/masq` address space; with one, each filter's params
(`/masq/filter/<name>/<param>`), each discovered direction (`/masq/direction/<i>`) and the show's named
cues appear too, each fader starting where the show starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.controls.addresses import ADDRESSES, default_bindings, default_params

# (page, title, address prefixes it holds), in tab order; an address no prefix claims goes to "more"
AREAS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("walk", "Walk", ("/masq/walk/", "/masq/keyframe/", "/masq/tempo/")),
    ("style", "Style", ("/masq/style/", "/masq/output/", "/masq/camera/", "/masq/direction/")),
    ("filters", "Filters", ("/masq/filter/",)),
    ("scenes", "Scenes", ("/masq/scene/",)),
    ("bookmarks", "Bookmarks", ("/masq/bookmark/",)),
)
MORE = ("more", "More")
PADS = 16  # pads per number address (slots, keyframes, cues 1..16); a show's own cues replace the cue pads
MAX_CUE_PADS = 64
KINDS = ("fader", "button", "pad")


@dataclass(frozen=True)
class Control:
    """One control: `fader` sends a float in low..high, `button` sends 1 on press, `pad` sends `low` (a
    whole number, low == high) on press."""
    key: str  # unique in the layout, a word: an id for the apps that need one
    address: str
    label: str
    kind: str
    low: float
    high: float
    default: float = 0.0  # where a fader starts (raw, in low..high)
    integer: bool = False  # sent as an OSC int32 ("i") rather than a float
    about: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"control {self.key}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "pad" and self.low != self.high:
            raise ValueError(f"control {self.key}: a pad sends one value (low == high)")
        if not min(self.low, self.high) <= self.default <= max(self.low, self.high):
            raise ValueError(f"control {self.key}: default {self.default} outside {self.low}..{self.high}")


@dataclass
class Page:
    name: str
    title: str
    controls: list[Control] = field(default_factory=list)
    note: str = ""  # shown on a page that has nothing (the filters page without a show)


def _page_of(address: str) -> str:
    for name, _, prefixes in AREAS:
        if address.startswith(prefixes):
            return name
    return MORE[0]


def _key(address: str, suffix: str = "") -> str:
    return address.strip("/").replace("/", "_") + suffix


def _label(address: str) -> str:
    return " ".join(address.split("/")[2:]).replace("_", " ")


def pages(show=None) -> list[Page]:
    """The layout for the address space, or for `show` (an `engine.show.Show`): pages in `AREAS` order,
    then "more" if the address space grew a prefix no page claims. Empty pages are kept, with a note, so
    every layout has the same tabs."""
    if show is not None:
        from engine.show import control_params

        params = control_params(show)
    else:
        params = default_params()
    by_name = {p.name: p for p in params}
    about = {a.address: a for a in ADDRESSES}
    cues = [(c.number, c.name) for c in (show.cues if show is not None else [])][:MAX_CUE_PADS]
    out = {name: Page(name, title) for name, title, _ in AREAS}
    for b in default_bindings(params):
        address, param = b.source[4:], by_name[b.target]
        row = about.get(address)
        args = row.args if row is not None else "f"
        page = out.setdefault(_page_of(address), Page(*MORE))
        text = row.about if row is not None else f"{param.name}: {param.minimum:g}..{param.maximum:g}"
        if param.trigger and args == "i":  # a number: one pad per value
            lo, hi = int(b.input[0]), int(b.input[1])
            numbers = [(n, f"{_label(address)} {n}") for n in range(lo, min(hi, lo + PADS - 1) + 1)]
            if address == "/masq/scene/cue" and cues:
                numbers = [(n, name or f"cue {n}") for n, name in cues]
            if address == "/masq/scene/go" and show is not None and show.scenes:  # one pad per scene, by name
                numbers = [(s.number, s.name) for s in show.scenes][:MAX_CUE_PADS]
            page.controls += [Control(_key(address, f"_{n}"), address, label, "pad", float(n), float(n),
                                      float(n), True, text) for n, label in numbers]
        elif param.trigger:
            page.controls.append(Control(_key(address), address, _label(address), "button", 0.0, 1.0, 0.0,
                                         False, text))
        else:
            label = _label(address) if row is not None else param.name.partition(".")[2].replace(".", " ")
            page.controls.append(Control(_key(address), address, label, "fader", b.input[0], b.input[1],
                                         b.unmap(param.default, param), False, text))
    if not out["filters"].controls:
        out["filters"].note = ("no filters: generate with --show SHOW.toml to get a fader for each of the "
                               "show's filter params")
    if not out["scenes"].controls:
        out["scenes"].note = "no cue address is bound"
    return list(out.values())


def addresses(layout: list[Page]) -> set[str]:
    return {c.address for page in layout for c in page.controls}
