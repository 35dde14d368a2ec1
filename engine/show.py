"""Show files: TOML data (never code), read into dataclasses and validated when loaded.

Every error names the file, the key and what was expected, so a technician can fix a show from the
message alone. Paths in a show are relative to the show file's folder, or to the project root for
paths that start with `assets/`.
"""

from __future__ import annotations

import dataclasses
import inspect
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import MasqueradeError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ShowError(MasqueradeError, ValueError):
    """A show that cannot be played; the message is meant for the person who wrote it."""


@dataclass
class ModelSection:
    # a Masquerade .safetensors, or a foreign checkpoint read as `masquerade models import` reads it
    # (NVlabs StyleGAN2-ADA/StyleGAN3 .pkl, rosinality .pt, DCGAN .pth)
    path: str = "assets/models/emoji64.safetensors"
    precision: str = "auto"  # "auto" (fp16 on CUDA, fp32 on CPU), "fp32", "fp16" (CUDA), "bf16"
    compile: bool = False  # torch.compile the synthesis (a first frame that takes seconds, then faster)
    cuda_graphs: bool = False  # with compile on CUDA: replay the whole frame as one graph

    def validate(self, where: str) -> None:
        if self.precision not in ("auto", "fp32", "fp16", "bf16"):
            raise ShowError(f"{where}: model.precision must be \"auto\", \"fp32\", \"fp16\" or \"bf16\", "
                            f"got {self.precision!r}")
        if self.cuda_graphs and not self.compile:
            raise ShowError(f"{where}: model.cuda_graphs needs model.compile = true")


@dataclass
class WalkSection:
    """`kind`, `seed` and `truncation` are common to every walk; the other keys of `[walk]` are the
    options of that kind (`engine/walks/<kind>.py`), checked by building the walk once at load time."""
    kind: str = "keyframes"
    seed: int = 0
    truncation: float = 1.0  # psi: 1 samples the full distribution, 0 gives the model's average image
    options: dict = field(default_factory=dict)

    def validate(self, where: str) -> None:
        from engine import walks

        _positive(where, "walk.truncation", self.truncation, allow_zero=True)
        if self.kind not in walks.names():
            raise ShowError(f"{where}: walk.kind must be one of {', '.join(walks.names())}, got {self.kind!r}")
        accepted = set(inspect.signature(walks.registry.get(self.kind)).parameters) - {"z_dim", "seed"}
        unknown = sorted(set(self.options) - accepted)
        if unknown:
            raise ShowError(f"{where}: unknown key walk.{unknown[0]} for kind {self.kind!r} "
                            f"(its options: {', '.join(sorted(accepted))}; all walks: kind, seed, truncation)")
        try:
            walks.create(self.kind, z_dim=2, seed=self.seed, **self.options)
        except (TypeError, ValueError) as e:
            raise ShowError(f"{where}: [walk] kind {self.kind!r}: {e}") from None


@dataclass
class OutputSection:
    size: tuple[int, int] = (1280, 720)  # window or video size, width x height
    fps: float = 30.0
    fit: str = "contain"  # "contain" letterboxes the square image, "cover" fills and crops
    upscale: str = "lanczos"  # "lanczos" or "nearest"
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # video feedback on the GL side (live params output.trail*, /masq/output/trail*): each presented frame is
    # mixed with the previous one, zoomed, rotated and faded (engine/compositor.py Trail)
    trail: float = 0.0  # weight of the previous frame: 0 off .. 0.95
    trail_zoom: float = 1.0  # scale of the previous frame per frame, 0.8..1.25 (> 1 grows outward)
    trail_rotate: float = 0.0  # degrees per frame, -10..10, counter-clockwise
    trail_fade: float = 1.0  # brightness of the previous frame per frame, 0..1

    def validate(self, where: str) -> None:
        from engine.controls.addresses import default_params

        ranges = {p.name: (p.minimum, p.maximum) for p in default_params()}  # one table for keys and faders
        for key in ("trail", "trail_zoom", "trail_rotate", "trail_fade"):
            lo, hi = ranges[f"output.{key}"]
            if not lo <= getattr(self, key) <= hi:
                raise ShowError(f"{where}: [output] {key} must be {lo}..{hi}, got {getattr(self, key)}")
        if len(self.size) != 2 or any(not isinstance(s, int) or s <= 0 for s in self.size):
            raise ShowError(f"{where}: [output] size must be [width, height] in pixels, got {list(self.size)}")
        _positive(where, "output.fps", self.fps)
        if self.fit not in ("contain", "cover"):
            raise ShowError(f"{where}: [output] fit must be \"contain\" or \"cover\", got {self.fit!r}")
        if self.upscale not in ("lanczos", "nearest"):
            raise ShowError(f"{where}: [output] upscale must be \"lanczos\" or \"nearest\", got {self.upscale!r}")
        if len(self.background) != 3 or any(not 0 <= c <= 1 for c in self.background):
            raise ShowError(f"{where}: [output] background must be [r, g, b] in 0..1, got {list(self.background)}")


@dataclass
class StyleSection:
    """Controls of StyleGAN-family models (see engine/style.py); DCGAN models refuse all but the defaults."""
    class_label: int = -1  # conditional models: which class (0..classes-1); -1: the model is unconditional
    truncation_cutoff: int = 0  # truncate only the first N style layers (0: all)
    mix_seed: int = -1  # style mixing: take some layers' styles from the latent of this seed (-1: off)
    mix_layers: str = "fine"  # which layers the mix replaces: "coarse", "middle" or "fine"
    noise_mode: str = "const"  # StyleGAN2 noise inputs: "const" (the model's fixed noise) or "none"
    noise_strength: float = 1.0  # multiplies the learned noise strengths: 0 smooth, > 1 grainier detail

    def validate(self, where: str) -> None:
        if self.mix_layers not in ("coarse", "middle", "fine"):
            raise ShowError(f"{where}: style.mix_layers must be \"coarse\", \"middle\" or \"fine\", "
                            f"got {self.mix_layers!r}")
        if self.noise_mode not in ("const", "none"):
            raise ShowError(f"{where}: style.noise_mode must be \"const\" or \"none\" (random noise would make "
                            f"frames differ from run to run), got {self.noise_mode!r}")
        _positive(where, "style.truncation_cutoff", self.truncation_cutoff, allow_zero=True)
        _positive(where, "style.noise_strength", self.noise_strength, allow_zero=True)


@dataclass
class OscSection:
    """Where the show listens for OSC (docs/osc.md); the engine never stops for a bad packet."""
    enabled: bool = True
    host: str = "0.0.0.0"  # the interface to listen on ("127.0.0.1": this machine only)
    port: int = 9000
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
    max_per_second: float = 500.0  # per sender; a flood beyond it is dropped and counted
    feedback: str = ""  # "host:port" that receives every value as it changes (TouchOSC faders follow)
    default_bindings: bool = True  # bind the /masq address space (docs/osc.md) to the params

    def validate(self, where: str) -> None:
        if not 0 <= self.port < 65536:
            raise ShowError(f"{where}: osc.port must be 0..65535, got {self.port}")
        _positive(where, "osc.max_per_second", self.max_per_second)


@dataclass
class AudioSection:
    """Music that drives the show (`audio:level`, `audio:onset`, `audio:low|mid|high`, `audio:tempo`,
    `audio:beat`; docs/inputs.md). A file drives renders and headless runs frame-exact and is muxed into
    rendered videos; "default" is the live microphone."""
    source: str = ""  # "": no audio; a file path; "default" (or a device name) for live input
    loop: bool = False  # live playback of a file starts again at its end

    @property
    def enabled(self) -> bool:
        return bool(self.source)

    def is_file(self, show: Show) -> bool:
        return self.enabled and self.source != "default" and show.resolve(self.source).suffix != ""


@dataclass
class TempoSection:
    """The show's beat: `tempo:beat`, `tempo:downbeat`, `tempo:phase`, `tempo:bar_phase`, `tempo:bpm`
    sources, tap tempo (`/masq/tempo/tap`), and what beat-locked walks follow (docs/inputs.md)."""
    bpm: float = 0.0  # 0: the beats walk's bpm, else 120
    downbeat: float = -1.0  # show time of a first beat (-1: the beats walk's downbeat, else 0)
    beats_per_bar: int = 4
    link: bool = False  # join an Ableton Link session (live only; needs the aalink package)

    def validate(self, where: str) -> None:
        if self.bpm and not 20 <= self.bpm <= 400:
            raise ShowError(f"{where}: tempo.bpm must be 20..400 (or 0: from the walk), got {self.bpm}")
        _positive(where, "tempo.beats_per_bar", self.beats_per_bar)


@dataclass
class CameraSection:
    """A camera watching the visitors (`camera:motion`, `camera:flow_x|y`, `camera:presence`,
    `camera:faces`, `camera:face_x|y`, `camera:hue|saturation|value`; docs/inputs.md). Lost or
    unplugged, its features ease to rest and it is reopened with back-off: the show goes on."""
    source: str = ""  # "": no camera; "0", "1", ...: a device index; a video file; a stream URL
    loop: bool = True  # a video file starts again at its end (a stand-in camera for a kiosk test)
    # mirror mode: the camera's image as the frame's source, before the filters (live param camera.mirror,
    # /masq/camera/mirror): 0 the generator only, 1 the camera only, between a blend
    mirror: float = 0.0
    flip: bool = True  # mirror mode shows the picture flipped left-right, as a mirror does (false: as filmed)

    @property
    def enabled(self) -> bool:
        return bool(self.source)

    def validate(self, where: str) -> None:
        if not 0 <= self.mirror <= 1:
            raise ShowError(f"{where}: camera.mirror must be 0..1 (0 the generator, 1 the camera), got {self.mirror}")
        if self.mirror > 0 and not self.enabled:
            raise ShowError(f"{where}: camera.mirror needs a camera: set camera.source (a device index or a video "
                            "file)")

    def device(self, show: Show):
        """What OpenCV opens: an int for a device index, else a path (resolved) or a URL."""
        if self.source.isdigit():
            return int(self.source)
        return self.source if "://" in self.source else str(show.resolve(self.source))


@dataclass
class MidiSection:
    """MIDI controllers and files as sources: `midi:cc/<channel>/<cc>` and `midi:note/<channel>/<note>`,
    0..1 (docs/inputs.md)."""
    port: str = ""  # "": none; a port name (or part of one); "any": the first input port
    file: str = ""  # a .mid file played in show time from the start (frame-exact, renders too)


@dataclass
class FilterStage:
    """One `[[filters]]` row: a filter by registry name and its constructor's arguments. The
    arguments are checked when the filter is built (each filter knows its own), with `where` in the
    message, so a typo still names the row."""
    kind: str
    args: dict
    where: str  # "show.toml [[filters]] #1 (superres)"
    name: str = ""  # the row's `name`, or its kind: live params are `filter.<name>.<control>`

    def controls(self) -> dict[str, tuple[float, float, float]]:
        """The filter's live params, name -> (start, minimum, maximum); a row value is the start."""
        from engine import filters

        found = {}
        for key, (default, lo, hi) in getattr(filters.get(self.kind), "controls", {}).items():
            start = self.args.get(key, default)
            if isinstance(start, bool) or not isinstance(start, (int, float)) or not lo <= start <= hi:
                raise ShowError(f"{self.where}: {key} must be a number in {lo}..{hi}, got {start!r}")
            found[key] = (float(start), float(lo), float(hi))
        return found


@dataclass
class LatentSection:
    """Bookmarks, discovered directions and their live params (docs/show-files.md)."""
    bookmarks: str = ""  # a bookmarks file (JSON): /masq/bookmark/save N writes slot N there ("": memory only)
    glide: float = 2.0  # seconds a bookmark recall takes to arrive, and to let go again
    hold: float = 8.0  # seconds a recalled bookmark stays before the walk takes over again
    directions: int = 0  # GANSpace directions as params direction.1..N (0: none)
    direction_range: float = 3.0  # each direction param runs -range..+range standard deviations

    def validate(self, where: str) -> None:
        _positive(where, "latent.glide", self.glide)
        _positive(where, "latent.hold", self.hold, allow_zero=True)
        _positive(where, "latent.directions", self.directions, allow_zero=True)
        if self.directions > 64:
            raise ShowError(f"{where}: latent.directions must be 0..64, got {self.directions}")
        _positive(where, "latent.direction_range", self.direction_range)


@dataclass
class Cue:
    """One `[[cue]]` row: what `/masq/scene/cue N` (or a bound MIDI note) does."""
    number: int
    where: str
    name: str = ""
    set: dict = field(default_factory=dict)  # param -> value, posted as source `cue:<param>`
    keyframe: int = 0  # jump to keyframe N (from 1; 0: stay)
    bookmark: int = 0  # recall bookmark slot N (from 1; 0: none)
    latent: str = ""  # recall latent arithmetic on named bookmarks: "smile - frown + calm" ("": none)


@dataclass
class SinkRow:
    """One `[[sinks]]` row: a live output by registry name (docs/sinks.md) and its keys, checked on load."""
    kind: str
    args: dict
    where: str  # "show.toml [[sinks]] #2 (stream)"


@dataclass
class Show:
    name: str = "Untitled"
    model: ModelSection = field(default_factory=ModelSection)
    walk: WalkSection = field(default_factory=WalkSection)
    output: OutputSection = field(default_factory=OutputSection)
    style: StyleSection = field(default_factory=StyleSection)
    filters: list[FilterStage] = field(default_factory=list)  # applied in order after the generator
    latent: LatentSection = field(default_factory=LatentSection)
    cues: list[Cue] = field(default_factory=list)
    tempo: TempoSection = field(default_factory=TempoSection)
    osc: OscSection = field(default_factory=OscSection)
    audio: AudioSection = field(default_factory=AudioSection)
    camera: CameraSection = field(default_factory=CameraSection)
    midi: MidiSection = field(default_factory=MidiSection)
    bindings: list = field(default_factory=list)  # [[bind]] rows as engine.controls.bus.Binding
    sinks: list[SinkRow] = field(default_factory=list)  # live outputs besides the window (`masquerade run`)
    source: Path | None = None  # the file it came from

    def resolve(self, path: str) -> Path:
        """A path written in the show, as a real path."""
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        base = self.source.parent if self.source else Path.cwd()
        if (base / p).exists() or not (PROJECT_ROOT / p).exists():
            return base / p
        return PROJECT_ROOT / p

    @property
    def model_path(self) -> Path:
        return self.resolve(self.model.path)


def load(path: str | Path) -> Show:
    path = Path(path)
    if not path.is_file():
        raise ShowError(f"{path}: no such show file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ShowError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ShowError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    return parse(data, str(path), source=path)


def parse(data: dict, where: str = "<show>", source: Path | None = None) -> Show:
    sections = ("model", "walk", "style", "output", "filters", "latent", "cue", "tempo", "osc", "audio", "camera",
                "midi", "bind", "sinks")
    unknown = set(data) - {"name", *sections}
    if unknown:
        raise ShowError(f"{where}: unknown key {sorted(unknown)[0]!r} at top level (expected name, [model], "
                        "[walk], [style], [output], [[filters]], [latent], [[cue]], [tempo], [osc], [audio], [camera], "
                        "[midi], [[bind]], [[sinks]])")
    name = data.get("name", "Untitled")
    if not isinstance(name, str):
        raise ShowError(f"{where}: name must be a string, got {type(name).__name__}")
    show = Show(name=name, source=source,
                model=_section(ModelSection, data, "model", where),
                walk=_walk(data.get("walk", {}), where),
                output=_section(OutputSection, data, "output", where),
                style=_section(StyleSection, data, "style", where),
                filters=_filters(data.get("filters", []), where),
                latent=_section(LatentSection, data, "latent", where),
                tempo=_section(TempoSection, data, "tempo", where),
                osc=_section(OscSection, data, "osc", where),
                audio=_section(AudioSection, data, "audio", where),
                camera=_section(CameraSection, data, "camera", where),
                midi=_section(MidiSection, data, "midi", where),
                sinks=_sinks(data.get("sinks", []), where))
    if show.midi.file and not show.resolve(show.midi.file).is_file():
        raise ShowError(f"{where}: midi.file: {show.resolve(show.midi.file)}: no such MIDI file")
    if show.audio.is_file(show) and not show.resolve(show.audio.source).is_file():
        raise ShowError(f"{where}: audio.source: {show.resolve(show.audio.source)}: no such audio file")
    show.osc.validate(where)
    show.camera.validate(where)
    show.output.validate(where)  # before control_params: the trail keys start the output.trail* params
    show.model.validate(where)
    show.latent.validate(where)
    show.tempo.validate(where)
    if show.walk.kind == "beats":  # one beat for the walk and the tempo sources; taps move both
        show.tempo.bpm = show.tempo.bpm or float(show.walk.options.get("bpm", 120.0))
        if show.tempo.downbeat < 0:
            show.tempo.downbeat = float(show.walk.options.get("downbeat", 0.0))
    show.tempo.bpm = show.tempo.bpm or 120.0
    show.tempo.downbeat = max(show.tempo.downbeat, 0.0)
    show.cues = _cues(data.get("cue", []), where)
    show.bindings = _bindings(data.get("bind", []), where, show)
    show.walk.validate(where)
    show.style.validate(where)
    return show


def _walk(raw, where: str) -> WalkSection:
    if not isinstance(raw, dict):
        raise ShowError(f"{where}: [walk] must be a table, got {type(raw).__name__}")
    common = {k: raw[k] for k in ("kind", "seed", "truncation") if k in raw}
    walk = _section(WalkSection, {"walk": common}, "walk", where)
    walk.options = {k: v for k, v in raw.items() if k not in common}
    return walk


def control_params(show: Show) -> list:
    """The params a show declares: the /masq set starting from the show's own values, each filter's
    controls (`filter.<name>.<control>`), the style and direction params."""
    from engine.controls.addresses import default_params
    from engine.controls.bus import Param, with_default

    starts = {"walk.truncation": show.walk.truncation, "style.class": max(show.style.class_label, 0),
              "tempo.bpm": show.tempo.bpm,
              "style.mix": 1.0 if show.style.mix_seed >= 0 else 0.0,
              "output.trail": show.output.trail, "output.trail_zoom": show.output.trail_zoom,
              "output.trail_rotate": show.output.trail_rotate, "output.trail_fade": show.output.trail_fade,
              "camera.mirror": show.camera.mirror}
    params = [with_default(p, starts[p.name]) if p.name in starts else p for p in default_params()]
    r = show.latent.direction_range
    params += [Param(f"direction.{i}", 0.0, -r, r, smoothing=0.2) for i in range(1, show.latent.directions + 1)]
    for stage in show.filters:
        for key, (start, lo, hi) in stage.controls().items():
            params.append(Param(f"filter.{stage.name}.{key}", start, lo, hi, smoothing=0.1))
    return params


def _cues(rows, where: str) -> list[Cue]:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ShowError(f"{where}: cue must be [[cue]] tables, one per cue")
    cues: dict[int, Cue] = {}
    for i, row in enumerate(rows, 1):
        here = f"{where} [[cue]] #{i}"
        unknown = set(row) - {"number", "name", "set", "keyframe", "bookmark", "latent"}
        if unknown:
            raise ShowError(f"{here}: unknown key {sorted(unknown)[0]!r} (expected number, name, set, keyframe, "
                            "bookmark, latent)")
        number = _coerce(row.get("number", i), int, f"{here}: number")
        if not 1 <= number <= 999 or number in cues:
            raise ShowError(f"{here}: number must be 1..999 and unique, got {number}")
        values = row.get("set", {})
        if not isinstance(values, dict):
            raise ShowError(f"{here}: set must be a table of param = value, got {values!r}")
        cue = Cue(number, here, _coerce(row.get("name", ""), str, f"{here}: name"),
                  {k: _coerce(v, float, f"{here}: set.{k}") for k, v in values.items()},
                  _coerce(row.get("keyframe", 0), int, f"{here}: keyframe"),
                  _coerce(row.get("bookmark", 0), int, f"{here}: bookmark"),
                  _coerce(row.get("latent", ""), str, f"{here}: latent"))
        if cue.keyframe < 0 or cue.bookmark < 0:
            raise ShowError(f"{here}: keyframe and bookmark count from 1 (0: none)")
        cues[number] = cue
    return sorted(cues.values(), key=lambda c: c.number)


def cue_bindings(show: Show, params) -> list:
    """`cue:<param>` -> param for every param a cue sets (checked: an unknown param names the cue)."""
    from engine.controls.bus import Binding

    names = {p.name: p for p in params}
    rows = {}
    for cue in show.cues:
        for target, value in cue.set.items():
            if target not in names:
                raise ShowError(f"{cue.where}: set.{target}: no such param (declared: {', '.join(sorted(names))})")
            p = names[target]
            if p.trigger or not p.minimum <= value <= p.maximum:
                raise ShowError(f"{cue.where}: set.{target} must be a value in {p.minimum}..{p.maximum}, got {value}")
            rows[target] = Binding(f"cue:{target}", target, (p.minimum, p.maximum), where=f"{cue.where} set.{target}")
    return list(rows.values())


def _bindings(rows, where: str, show: Show) -> list:
    from engine.controls.addresses import default_bindings
    from engine.controls.bus import Binding, Bus, ControlError, declare_all

    if not isinstance(rows, list):
        raise ShowError(f"{where}: bind must be [[bind]] tables, one per row")
    params = control_params(show)
    try:
        bindings = [Binding.from_table(row, f"{where} [[bind]] #{i}") for i, row in enumerate(rows, 1)]
        if show.osc.default_bindings:
            bindings = default_bindings(params, f"{where} default OSC bindings") + bindings
        bindings += cue_bindings(show, params)
        declare_all(Bus(), params, bindings)  # every row checked against the params now, not mid-show
    except ControlError as e:
        raise ShowError(str(e)) from None
    return bindings


def _filters(rows, where: str) -> list[FilterStage]:
    from engine import filters

    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ShowError(f"{where}: filters must be [[filters]] tables, one per stage")
    stages = []
    for i, row in enumerate(rows, 1):
        row = dict(row)
        kind = row.pop("kind", None)
        here = f"{where} [[filters]] #{i}"
        if kind not in filters.names():
            raise ShowError(f"{here}: kind must be one of {', '.join(filters.names())}, got {kind!r}")
        name = row.pop("name", kind)
        if not isinstance(name, str) or not name or any(c in OSC_NAME_FORBIDDEN for c in name):
            raise ShowError(f"{here}: name must be a word without spaces, dots or slashes (it is an OSC "
                            f"address part: /masq/filter/<name>/...), got {name!r}")
        if name in {s.name for s in stages}:
            raise ShowError(f"{here}: two filters are named {name!r}; give one a `name = \"...\"`")
        stage = FilterStage(kind, row, f"{here} ({kind})", name)
        stage.controls()  # a control's start value out of range names the row now
        stages.append(stage)
    return stages


OSC_NAME_FORBIDDEN = set(" ./#*,?[]{}")


def _sinks(rows, where: str) -> list[SinkRow]:
    from engine import sinks

    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ShowError(f"{where}: sinks must be [[sinks]] tables, one per output")
    found = []
    for i, row in enumerate(rows, 1):
        row = dict(row)
        kind = row.pop("kind", None)
        here = f"{where} [[sinks]] #{i}" + (f" ({kind})" if isinstance(kind, str) else "")
        try:
            sinks.check(kind, row)
        except ValueError as e:
            raise ShowError(f"{here}: {e}") from None
        found.append(SinkRow(kind, row, here))
    return found


def _section(cls, data: dict, name: str, where: str):
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        raise ShowError(f"{where}: [{name}] must be a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise ShowError(f"{where}: unknown key {name}.{key} (expected one of {', '.join(sorted(fields))})")
        values[key] = _coerce(value, hints[key], f"{where}: {name}.{key}")
    return cls(**values)


def _coerce(value, hint, where: str):
    """TOML value -> the field's type, refusing anything that would need a guess."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list):
            raise ShowError(f"{where} must be a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item, where) for v in value)
    if hint is dict or hint is list:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ShowError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ShowError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ShowError(f"{where} must be a whole number, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ShowError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported field type {hint}")


def _positive(where, key, value, minimum=None, allow_zero=False):
    if minimum is not None and value < minimum:
        raise ShowError(f"{where}: {key} must be at least {minimum}, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ShowError(f"{where}: {key} must be {'zero or more' if allow_zero else 'positive'}, got {value}")


def parse_size(text: str) -> tuple[int, int]:
    """'1920x1080' -> (1920, 1080), for the command line."""
    try:
        w, h = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise ShowError(f"size must be WIDTHxHEIGHT in pixels, like 1920x1080, got {text!r}") from None
    if w <= 0 or h <= 0 or w > 16384 or h > 16384:
        raise ShowError(f"size must be WIDTHxHEIGHT between 1x1 and 16384x16384, got {text!r}")
    return w, h
