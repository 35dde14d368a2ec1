"""Show files: TOML data (never code), read into dataclasses and validated when loaded.

Every error names the file, the key and what was expected, so a technician can fix a show from the
message alone. Paths in a show are relative to the show file's folder, or to the project root for
paths that start with `assets/`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import MasqueradeError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_PREFIX = "weights:"  # path = "weights:googlenet": a catalogue file in the weights cache (docs/weights.md)


class ShowError(MasqueradeError, ValueError):
    """A show that cannot be played; the message is meant for the person who wrote it."""


@dataclass
class ModelSection:
    # a Masquerade .safetensors, or a foreign checkpoint read as `masquerade models import` reads it
    # (NVlabs StyleGAN2-ADA/StyleGAN3 .pkl, rosinality .pt, DCGAN .pth)
    path: str = "assets/models/emoji64.safetensors"
    precision: str = "auto"  # "auto" (fp16 on CUDA, fp32 on CPU), "fp32", "fp16" (CUDA), "bf16"
    # torch.compile the synthesis: "auto" where it pays, in live shows, warming up in the background while
    # the eager model draws; true also in headless runs and renders (their first frame waits for it); false
    compile: bool | str = "auto"
    cuda_graphs: bool = False  # with compile on CUDA: replay the whole frame as one graph

    def validate(self, where: str) -> None:
        if self.precision not in ("auto", "fp32", "fp16", "bf16"):
            raise ShowError(f"{where}: model.precision must be \"auto\", \"fp32\", \"fp16\" or \"bf16\", "
                            f"got {self.precision!r}")
        if not (isinstance(self.compile, bool) or self.compile == "auto"):
            raise ShowError(f"{where}: model.compile must be true, false or \"auto\", got {self.compile!r}")
        if self.cuda_graphs and self.compile is not True:
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
    # the size the [[filters]] and the mirror work at, [width, height] or one side: the generator's frame, after
    # any super-resolution rows, is resized to it (engine/frame_path.py); 0: the super-resolution's output size,
    # else the generator's
    work_size: tuple[int, int] = (0, 0)

    def validate(self, where: str) -> None:
        if self.work_size != (0, 0) and not all(MIN_WORK_SIDE <= s and s % 2 == 0 for s in self.work_size):
            raise ShowError(f"{where}: output.work_size must be even sides of {MIN_WORK_SIDE}..{MAX_WORK_SIDE} pixels "
                            f"([width, height] or one side; 0: automatic), got {list(self.work_size)}")
        if self.fit not in ("contain", "cover"):
            raise ShowError(f"{where}: [output] fit must be \"contain\" or \"cover\", got {self.fit!r}")
        if self.upscale not in ("lanczos", "nearest"):
            raise ShowError(f"{where}: [output] upscale must be \"lanczos\" or \"nearest\", got {self.upscale!r}")


@dataclass
class StyleSection:
    """Controls of StyleGAN-family models (see engine/style.py); DCGAN models refuse all but the defaults."""
    class_label: int = -1  # conditional models: which class (0..classes-1); -1: the model is unconditional
    truncation_cutoff: int = 0  # truncate only the first N style layers (0: all)
    mix_seed: int = -1  # style mixing: take some layers' styles from the latent of this seed (-1: off)
    mix_layers: str = "fine"  # which layers the mix replaces: "coarse", "middle" or "fine"
    noise_mode: str = "const"  # StyleGAN2 noise inputs: "const" (the model's fixed noise) or "none"
    noise_strength: float = 1.0  # multiplies the learned noise strengths: 0 smooth, > 1 grainier detail
    translate_x: float = 0.0  # StyleGAN3: the picture slid right, in image widths (-1..1); live: style.translate_x
    translate_y: float = 0.0  # StyleGAN3: slid down, in image widths (-1..1); live: style.translate_y
    rotate: float = 0.0  # StyleGAN3: turned counter-clockwise, degrees (-180..180); live: style.rotate

    def validate(self, where: str) -> None:
        from engine.controls.addresses import default_params

        ranges = {p.name: (p.minimum, p.maximum) for p in default_params()}  # one table for keys and faders
        for key in ("translate_x", "translate_y", "rotate"):
            lo, hi = ranges[f"style.{key}"]
            if not lo <= getattr(self, key) <= hi:  # NaN fails too
                raise ShowError(f"{where}: style.{key} must be {lo}..{hi}, got {getattr(self, key)}")
        if self.mix_layers not in ("coarse", "middle", "fine"):
            raise ShowError(f"{where}: style.mix_layers must be \"coarse\", \"middle\" or \"fine\", "
                            f"got {self.mix_layers!r}")
        if self.noise_mode not in ("const", "none"):
            raise ShowError(f"{where}: style.noise_mode must be \"const\" or \"none\" (random noise would make "
                            f"frames differ from run to run), got {self.noise_mode!r}")


@dataclass
class OscSection:
    """Where the show listens for OSC (docs/osc.md); the engine never stops for a bad packet."""
    enabled: bool = True
    host: str = "127.0.0.1"  # the interface to listen on: this machine only; "0.0.0.0" opens it to the network
    port: int = 9000
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # senders heard (add the controllers' addresses)
    max_per_second: float = 500.0  # messages per sender; a flood beyond it is dropped and counted
    feedback: str = ""  # "host:port" that receives every value as it changes (TouchOSC faders follow)
    feedback_per_second: float = 20.0
    secret: str = ""  # shared secret: senders off this machine must sign each message (docs/osc.md)
    default_bindings: bool = True  # bind the /masq address space (docs/osc.md) to the params
    echo: bool = False  # send a value changed elsewhere to every controller that sent us OSC, on its own address
    query_port: int = -1  # OSCQuery (HTTP, on `host`): the address space with values; 0: any free port; -1: off

    def validate(self, where: str) -> None:
        if not 0 <= self.port < 65536:
            raise ShowError(f"{where}: osc.port must be 0..65535, got {self.port}")
        for key in ("max_per_second", "feedback_per_second"):
            if not 0 < getattr(self, key) < math.inf:  # NaN fails too
                raise ShowError(f"{where}: osc.{key} must be a positive finite number, got {getattr(self, key)}")
        if self.feedback_per_second > 50:  # the receiver's thread looks at the feedback clock 50 times a second
            raise ShowError(f"{where}: osc.feedback_per_second must be at most 50, got {self.feedback_per_second}")
        if self.secret and len(self.secret) < 16:
            raise ShowError(f"{where}: osc.secret must be at least 16 characters (a passphrase, not a PIN)")


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
    quantise: str = ""  # cues and scene changes fired live wait for the next "beat" or "bar" ("": at once)

    def validate(self, where: str) -> None:
        if self.bpm and not 20 <= self.bpm <= 400:
            raise ShowError(f"{where}: tempo.bpm must be 20..400 (or 0: from the walk), got {self.bpm}")
        if self.quantise not in QUANTISE:
            raise ShowError(f"{where}: tempo.quantise must be \"beat\", \"bar\" or \"\" (at once), "
                            f"got {self.quantise!r}")


QUANTISE = ("", "beat", "bar")


@dataclass
class TimelineSection:
    """`[timeline]`: how the `[[scene]]` rows follow one another (docs/show-files.md, Scenes and timeline)."""
    loop: bool = True  # after the last scene, the first again; false: the last holds, and a render ends with it


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
    mappings: str = ""  # a MIDI mappings file (TOML, MIDI learn writes it): the controller's table is bound


@dataclass
class DmxSection:
    """Art-Net and sACN (E1.31) in: a lighting desk's channels as `dmx:<universe>/<channel>` sources, level / 255
    (docs/inputs.md). Like OSC, only this machine is heard unless `host` and `allow` open it."""
    protocol: str = ""  # "": off; "artnet", "sacn" or "both"
    host: str = "127.0.0.1"  # the interface to listen on; "0.0.0.0" for a desk on the network (and sACN multicast)
    universe: int = 1  # Art-Net Port-Address 0..32767, sACN 1..63999
    start: int = 1  # the first channel listened to (the fixture's start address)
    channels: int = 512  # how many, from start
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # senders heard (add the desk's address)
    max_per_second: float = 1000.0  # packets per sender, every universe counted; the excess is dropped
    multicast: bool = True  # sACN with host "0.0.0.0": join the universe's multicast group
    timeout: float = 2.5  # seconds without packets before the channels are let go

    @property
    def enabled(self) -> bool:
        return bool(self.protocol)

    def validate(self, where: str, bindings) -> None:
        """The settings, and every `dmx:` binding against them (a channel outside the patch would never move)."""
        from engine.controls import dmx
        from engine.controls.bus import ControlError

        if self.enabled:
            try:
                dmx.check(self.protocol, self.universe, self.start, self.channels, self.timeout,
                          self.max_per_second, where=f"{where}: dmx.")
                dmx.Allowlist(self.allow, f"{where}: dmx.allow")
                dmx.check_host(self.host, f"{where}: dmx.host")
            except ControlError as e:
                raise ShowError(str(e).replace("dmx. ", "dmx.")) from None
        for b in bindings:
            if b.scheme != "dmx":
                continue
            found = dmx.parse_source(b.source)
            if not self.enabled:
                raise ShowError(f"{b.where}: source {b.source!r} needs [dmx] protocol = \"artnet\", \"sacn\" "
                                "or \"both\"")
            last = self.start + self.channels - 1
            if found is None or found[0] != self.universe or not self.start <= found[1] <= last:
                raise ShowError(f"{b.where}: source {b.source!r} must be dmx:{self.universe}/<channel> with a channel "
                                f"in {self.start}..{last} (the show's [dmx] universe, start and channels)")


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
    at: float | None = None  # fires by itself at this show time (seconds; "bar.beat" in the file); None: cued only
    fade: float = 0.0  # seconds its `set` values ease over (0: each param's own smoothing)
    quantise: str = ""  # fired live: wait for the next "beat" or "bar"; "none": at once; "": as [tempo] quantise
    scene: int | None = None  # go to this scene (an index into Show.scenes); None: stay


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
    dmx: DmxSection = field(default_factory=DmxSection)
    bindings: list = field(default_factory=list)  # [[bind]] rows as engine.controls.bus.Binding
    sinks: list[SinkRow] = field(default_factory=list)  # live outputs besides the window (`masquerade run`)
    scenes: list = field(default_factory=list)  # [[scene]] rows as engine.scenes.Scene, each with a derived Show
    timeline: TimelineSection = field(default_factory=TimelineSection)
    source: Path | None = None  # the file it came from

    def resolve(self, path: str) -> Path:
        """A path written in the show, as a real path; `weights:NAME` is the file `masquerade weights get NAME`
        fetched (engine/weights), never downloaded here."""
        if path.startswith(WEIGHTS_PREFIX):
            from engine import weights

            try:
                return weights.resolve(path[len(WEIGHTS_PREFIX):])
            except MasqueradeError as e:
                raise ShowError(f"{self.source or '<show>'}: {e}") from None
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
    if path.stat().st_size > MAX_SHOW_BYTES:
        raise ShowError(f"{path}: {path.stat().st_size:,} bytes is not a show file (at most {MAX_SHOW_BYTES:,})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ShowError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:  # tomllib reads nested arrays and inline tables recursively
        raise ShowError(f"{path}: not valid TOML here: arrays or tables nested too deeply") from None
    except UnicodeDecodeError as e:
        raise ShowError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    try:
        return parse(data, str(path), source=path)
    except ShowError as e:
        text = " ".join(str(e).split())
        if len(text) <= len(str(path)) + MAX_MESSAGE:
            raise
        raise ShowError(text[: len(str(path)) + MAX_MESSAGE - 1] + "…") from None


def parse(data: dict, where: str = "<show>", source: Path | None = None) -> Show:
    _all_finite(data, where)  # every number anywhere: walk options, filter and sink keys, cues, bindings too
    sections = ("model", "walk", "style", "output", "filters", "latent", "cue", "tempo", "osc", "audio", "camera",
                "midi", "dmx", "bind", "sinks", "scene", "timeline")
    unknown = set(data) - {"name", *sections}
    if unknown:
        raise ShowError(f"{where}: unknown key {sorted(unknown)[0]!r} at top level (expected name, [model], "
                        "[walk], [style], [output], [[filters]], [latent], [[cue]], [tempo], [osc], [audio], [camera], "
                        "[midi], [dmx], [[bind]], [[sinks]], [[scene]], [timeline])")
    name = data.get("name", "Untitled")
    if not isinstance(name, str):
        raise ShowError(f"{where}: name must be a string, got {type(name).__name__}")
    show = Show(name=name, source=source,
                model=_section(ModelSection, data, "model", where),
                walk=_walk(data.get("walk", {}), where),
                output=_section(OutputSection, _one_side(data, "output", "work_size", where), "output", where),
                style=_section(StyleSection, data, "style", where),
                filters=_filters(data.get("filters", []), where),
                latent=_section(LatentSection, data, "latent", where),
                tempo=_section(TempoSection, data, "tempo", where),
                osc=_section(OscSection, data, "osc", where),
                audio=_section(AudioSection, data, "audio", where),
                camera=_section(CameraSection, data, "camera", where),
                midi=_section(MidiSection, data, "midi", where),
                dmx=_section(DmxSection, data, "dmx", where),
                sinks=_sinks(data.get("sinks", []), where))
    if show.midi.file and not show.resolve(show.midi.file).is_file():
        raise ShowError(f"{where}: midi.file: {show.resolve(show.midi.file)}: no such MIDI file")
    if show.audio.is_file(show) and not show.resolve(show.audio.source).is_file():
        raise ShowError(f"{where}: audio.source: {show.resolve(show.audio.source)}: no such audio file")
    show.osc.validate(where)
    show.camera.validate(where)
    show.output.validate(where)  # before control_params: the trail keys start the output.trail* params
    show.style.validate(where)  # before control_params too: translate_x/_y and rotate start style.* params
    show.model.validate(where)
    _check_weights(show, where)
    show.tempo.validate(where)
    if show.walk.kind == "beats":  # one beat for the walk and the tempo sources; taps move both
        show.tempo.bpm = show.tempo.bpm or float(show.walk.options.get("bpm", 120.0))
        if show.tempo.downbeat < 0:
            show.tempo.downbeat = float(show.walk.options.get("downbeat", 0.0))
    show.tempo.bpm = show.tempo.bpm or 120.0
    show.tempo.downbeat = max(show.tempo.downbeat, 0.0)
    from engine import scenes  # [[scene]] rows: each a Show derived from this one (engine/scenes.py)

    show.timeline = _section(TimelineSection, data, "timeline", where)
    show.scenes = scenes.resolve(data, show, where)
    show.cues = _cues(data.get("cue", []), where, show)
    _check_timed_cues(show, where)
    show.bindings = _bindings(data.get("bind", []), where, show)
    show.bindings += _midi_mappings(show, where)
    scenes.inherit(show)  # every scene plays the show's cues and bindings
    show.dmx.validate(where, show.bindings)
    show.walk.validate(where)
    return show


def _check_weights(show: Show, where: str) -> None:
    """Each `weights:NAME` path of the model and the filters names a catalogue file already fetched: said
    at load, with the command that fetches it (a show never downloads)."""
    rows = [(f"{where}: model.path", show.model.path)] + [(f"{s.where}: path", s.args.get("path"))
                                                          for s in show.filters]
    for here, value in rows:
        if isinstance(value, str) and value.startswith(WEIGHTS_PREFIX):
            from engine import weights

            try:
                weights.resolve(value[len(WEIGHTS_PREFIX):])
            except MasqueradeError as e:
                raise ShowError(f"{here}: {e}") from None


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
              "style.translate_x": show.style.translate_x, "style.translate_y": show.style.translate_y,
              "style.rotate": show.style.rotate,
              "output.trail": show.output.trail, "output.trail_zoom": show.output.trail_zoom,
              "output.trail_rotate": show.output.trail_rotate, "output.trail_fade": show.output.trail_fade,
              "camera.mirror": show.camera.mirror}
    params = [with_default(p, starts[p.name]) if p.name in starts else p for p in default_params()]
    r = show.latent.direction_range
    params += [Param(f"direction.{i}", 0.0, -r, r, smoothing=0.2) for i in range(1, show.latent.directions + 1)]
    for stage in show.filters:
        for key, (start, lo, hi) in stage.controls().items():
            params.append(Param(f"filter.{stage.name}.{key}", start, lo, hi, smoothing=0.1))
    if show.scenes:  # the bus holds every scene's params (engine/scenes.py: each scene starts at its own values)
        from engine import scenes

        params = scenes.all_params(show, params)
    return params


def _cues(rows, where: str, show: Show) -> list[Cue]:
    from engine import timeline

    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ShowError(f"{where}: cue must be [[cue]] tables, one per cue")
    cues: dict[int, Cue] = {}
    for i, row in enumerate(rows, 1):
        here = f"{where} [[cue]] #{i}"
        keys = ("number", "name", "set", "keyframe", "bookmark", "latent", "at", "fade", "quantise", "scene")
        unknown = set(row) - set(keys)
        if unknown:
            raise ShowError(f"{here}: unknown key {sorted(unknown)[0]!r} (expected {', '.join(keys)})")
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
        _check_number(here, "keyframe", cue.keyframe, bounds=RANGES["cue.keyframe"])
        _check_number(here, "bookmark", cue.bookmark, bounds=RANGES["cue.bookmark"])
        timeline.read_cue(cue, row, here, show)  # at, fade, quantise, scene
        cues[number] = cue
    return sorted(cues.values(), key=lambda c: c.number)


def _check_timed_cues(show: Show, where: str) -> None:
    """Timed cues that fade one param over overlapping times, or fire after a finite piece's end: refused."""
    from engine.scenes import end_of_scenes

    timed = sorted((c for c in show.cues if c.at is not None), key=lambda c: (c.at, c.number))
    for j, b in enumerate(timed):
        for a in timed[:j]:
            if a.at < b.at + b.fade - 1e-9 and b.at < a.at + a.fade - 1e-9:
                for param in sorted(set(a.set) & set(b.set)):
                    raise ShowError(f"{b.where}: set.{param} fades over {b.at:g}..{b.at + b.fade:g} s, overlapping "
                                    f"{a.where[len(where) + 1:]}'s fade of it over {a.at:g}..{a.at + a.fade:g} s "
                                    "(one fade of a param at a time)")
    end = end_of_scenes(show)
    for cue in timed:
        if end is not None and cue.at > end + 1e-9:
            raise ShowError(f"{cue.where}: at {cue.at:g} s is after the piece's end ({end:g} s: its last scene "
                            "ends there, [timeline] loop = false)")


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


def _midi_mappings(show: Show, where: str) -> list:
    """`[midi] mappings`: the controller's table of a mappings file as bindings (engine/controls/learn.py); a
    file not there yet is empty (MIDI learn writes it). A bad row names the show, the file and the key."""
    if not show.midi.mappings:
        return []
    from engine.controls import learn
    from engine.controls.bus import Bus, ControlError, declare_all

    params = {p.name: p for p in control_params(show)}
    try:
        rows = learn.bindings(show.resolve(show.midi.mappings), params, show.midi.port, show.midi.file)
        declare_all(Bus(), params.values(), [*show.bindings, *rows])
    except ControlError as e:
        raise ShowError(f"{where}: midi.mappings: {e}") from None
    return rows


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
        from engine import timeline

        bindings += timeline.bindings()  # timed and quantised cues, derived like cue values: never recorded
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


MIN_WORK_SIDE = 16  # output.work_size: smaller frames give the filters nothing to work on
MAX_WORK_SIDE = 4096  # output.work_size: beyond it a frame's filters are offline work on any machine


def _one_side(data: dict, section: str, key: str, where: str) -> dict:
    """`key = N` in `[section]` as `[N, N]` (a square), checked as the single number it was written as."""
    raw = data.get(section)
    if not isinstance(raw, dict) or isinstance(raw.get(key), (list, bool)) or key not in raw:
        return data
    value = _coerce(raw[key], int, f"{where}: {section}.{key}")
    _check_number(where, f"{section}.{key}", value, 0)
    return {**data, section: {**raw, key: [value, value]}}


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
        if key in _numbers(cls):
            _check_number(where, f"{name}.{key}", values[key], getattr(cls(), key))
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
    if isinstance(hint, types.UnionType):  # `bool | str`: the value as written, if it is one of them
        if not isinstance(value, typing.get_args(hint)):
            kinds = {bool: "true or false", str: "a string", int: "a whole number", float: "a number"}
            raise ShowError(f"{where} must be {' or '.join(kinds[t] for t in typing.get_args(hint))}, got {value!r}")
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


MAX_SHOW_BYTES = 1 << 20
MAX_NESTING = 16  # arrays and tables inside one another (a cue's `set` table is 3 deep)
MAX_MESSAGE = 300  # characters of a message after the file's name: quoted values are cut to fit
MAX_SIDE = 16384  # pixels, the largest texture side GL drivers promise
RANGES: dict[str, tuple[float, float, str]] = {  # every number a show section holds: lowest, highest, what it is
    "walk.seed": (0, 2**32 - 1, "a seed"),
    "output.size": (1, MAX_SIDE, "[width, height] in pixels"),
    "output.fps": (1, 240, "frames per second"),
    "output.background": (0, 1, "[r, g, b]"),
    "output.work_size": (0, MAX_WORK_SIDE, "[width, height] or one side in pixels, even; 0: automatic"),
    "style.class_label": (-1, 10_000, "a class; -1: unconditional"),
    "style.truncation_cutoff": (0, 64, "style layers; 0: all"),
    "style.mix_seed": (-1, 2**32 - 1, "a seed; -1: off"),
    "style.noise_strength": (0, 10, "a factor"),
    "osc.port": (0, 65535, "a UDP port; 0: any free one"),
    "osc.max_per_second": (1, 1e6, "messages per second"),
    "osc.feedback_per_second": (0.1, 50, "messages per second"),
    "osc.query_port": (-1, 65535, "a TCP port for OSCQuery; 0: any free one; -1: off"),
    "dmx.universe": (0, 63999, "a universe: Art-Net 0..32767, sACN 1..63999"),
    "dmx.start": (1, 512, "a DMX channel"),
    "dmx.channels": (1, 512, "DMX channels"),
    "dmx.max_per_second": (1, 1e6, "packets per second"),
    "dmx.timeout": (0.1, 3600, "seconds"),
    "tempo.bpm": (0, 400, "beats per minute; 0: from the walk"),
    "tempo.downbeat": (-1, 1e6, "seconds of show time; -1: from the walk"),
    "tempo.beats_per_bar": (1, 64, "beats"),
    "latent.glide": (0.001, 3600, "seconds"),
    "latent.hold": (0, 86400, "seconds"),
    "latent.directions": (0, 64, "directions"),
    "latent.direction_range": (0.01, 100, "standard deviations"),
    "cue.keyframe": (0, 10_000, "a keyframe from 1; 0: stay"),
    "cue.bookmark": (0, 64, "a bookmark slot from 1; 0: none"),
    "cue.at": (0, 1e6, "seconds of show time, or \"bar.beat\""),
    "cue.fade": (0, 3600, "seconds, or \"N beats\" / \"N bars\""),
    "scene.duration": (0.1, 1e6, "seconds, or \"until cued\""),
    "scene.transition.seconds": (0, 600, "seconds"),
    "scene.transition.colour": (0, 1, "[r, g, b]"),
}  # keys that start a live param (walk.truncation, output.trail*, camera.mirror, ...) take the param's range


def number_range(key: str) -> tuple[float, float]:
    """(lowest, highest) a show accepts for `key` ("output.fps"): from RANGES, else the live param it starts."""
    if key in RANGES:
        return RANGES[key][:2]
    from engine.controls.addresses import default_params

    for p in default_params():
        if p.name == key:
            return p.minimum, p.maximum
    raise KeyError(f"no range for {key}: add it to engine.show.RANGES")


def _numbers(cls) -> set[str]:
    """The keys of a section that hold numbers (or tuples of numbers)."""
    hints = typing.get_type_hints(cls)
    found = set()
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        item = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else hint
        if item in (int, float):
            found.add(f.name)
    return found


def _check_number(where: str, key: str, value, default=None, bounds: tuple | None = None) -> None:
    """The one check every number of a show passes: finite and within its range (RANGES, the live param's,
    or `bounds`); a tuple (a size, a colour) has the default's length, every item in range. The message
    names the file and the key."""
    lo, hi, about = bounds or (*number_range(key), RANGES.get(key, (0, 0, ""))[2])
    items = value if isinstance(value, tuple) else (value,)
    if (not isinstance(value, tuple) or len(value) == len(default)) and all(
            isinstance(v, int | float) and math.isfinite(v) and lo <= v <= hi for v in items):
        return
    what = f"{len(default)} numbers in " if isinstance(value, tuple) else ""  # whole ones: _coerce saw to that
    got = f"[{', '.join(map(str, items[:8]))}{', ...' if len(items) > 8 else ''}]" if isinstance(value, tuple) \
        else value
    raise ShowError(f"{where}: {key} must be {what}{_plain_number(lo)}..{_plain_number(hi)}"
                    f"{f' ({about})' if about else ''}, got {got}")


def _plain_number(x) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _all_finite(data, where: str) -> None:
    """Refuse NaN and infinities anywhere in a show, and arrays or tables nested deeper than MAX_NESTING
    (whatever printed or walked them would recurse), naming the key. Iterative: no depth limit to hit."""
    stack = [(data, "", 0)]
    while stack:
        value, key, depth = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise ShowError(f"{where}: {key} must be a finite number, got {value}")
        if isinstance(value, dict | list) and depth > MAX_NESTING:
            raise ShowError(f"{where}: {key} is nested more than {MAX_NESTING} deep: no show key takes that")
        if isinstance(value, dict):
            stack += [(v, f"{key}.{k}" if key else str(k), depth + 1) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, f"{key}[{i}]", depth + 1) for i, v in enumerate(value, 1)]


def parse_size(text: str) -> tuple[int, int]:
    """'1920x1080' -> (1920, 1080), for the command line."""
    try:
        w, h = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise ShowError(f"size must be WIDTHxHEIGHT in pixels, like 1920x1080, got {text!r}") from None
    if w <= 0 or h <= 0 or w > MAX_SIDE or h > MAX_SIDE:
        raise ShowError(f"size must be WIDTHxHEIGHT between 1x1 and {MAX_SIDE}x{MAX_SIDE}, got {text!r}")
    return w, h
