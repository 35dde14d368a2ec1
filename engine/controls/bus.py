"""The control bus: inputs post events from their own threads; the render loop reads one snapshot a frame.

Inputs never touch the walk or the latent. They `post(source, value)`; the show's bindings map each
source onto a declared parameter; `snapshot(t)` applies what is due at show time `t` and returns an
immutable view. Every applied event carries a show time, so a frame stays a pure function of show time and
control state, and a `Recording` of a live set re-renders the same frames offline.

The rules, in one place (docs/osc.md repeats them for users):
- Time: an event applies in the first snapshot whose `t` is at or after its time `at`. Untimed events and
  late scheduled ones apply at that snapshot's `t`. Due events apply in time order, then post order.
- Mapping: `u = (raw - input[0]) / (input[1] - input[0])`, clamped to 0..1; "linear": `lo + u (hi - lo)`;
  "exp": `lo (hi / lo) ** u`, so a fader's middle is the geometric mean (speed 1/8..8: the middle is 1).
  `lo, hi` is the binding's `output`, by default the param's range; the result is clamped to the param.
- Several sources on one param: each source keeps its latest value; the highest priority wins; among
  equal priorities the most recent event wins. `release(source)` withdraws a source (a device unplugged);
  when no source is left the param holds its value.
- Smoothing: exponential approach to the winning value, time constant `smoothing` seconds of show time,
  integrated piecewise between event times, so 30 and 60 fps give the same values at the same `t`.
- Triggers: momentary. A trigger fires in the snapshot that applies it, once, when the raw value is not 0
  (a button sends 1 on press and 0 on release). Any bound source fires it, whatever its priority; its
  value is the mapped value of the last firing (a slot or cue number).
- Floods: a frame applies at most one untimed value per source (its newest: every untimed event applies at
  the same show time, so the ones before it could not show), and a trigger's press is never replaced by its
  release. Scheduled events keep their own times unless more than `MAX_DUE` fall due in one frame; then
  they too are coalesced per source. Coalesced events are counted, so is a post from a source no binding
  names (dropped at once) and a value that is not a finite number: the snapshot's work is bounded by the
  bindings, not by the rate of the input.
"""

from __future__ import annotations

import difflib
import heapq
import itertools
import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from engine.errors import MasqueradeError

MAX_DUE = 64  # scheduled events due in one frame beyond which they are coalesced per source

SCHEMES = ("osc", "midi", "dmx", "camera", "audio", "tempo", "cue", "web", "key")  # "web", "key": no input yet
DERIVED = ("cue:", "tempo:")  # sources the engine derives from the show and recorded events: never recorded
CURVES = ("linear", "exp")
TAKEOVERS = ("jump", "soft")  # soft: a control takes its param only on reaching (or crossing) the param's value
QUANTISE = ("", "beat", "bar", "none")  # a trigger waits for the next beat or bar ("": the show's [tempo] quantise)
OSC_FORBIDDEN = set(" #*,?[]{}")  # OSC 1.0: characters an address may not contain


class ControlError(MasqueradeError, ValueError):
    """A parameter, binding or recording that cannot work; the message names the row at fault."""


@dataclass(frozen=True)
class Param:
    """A named value the loop reads each frame (`walk.speed`), or a momentary trigger (`bookmark.save`)."""
    name: str
    default: float = 0.0
    minimum: float = 0.0
    maximum: float = 1.0
    smoothing: float = 0.0  # seconds of show time to close ~63% of a jump; 0 = instant
    trigger: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or any(c.isspace() for c in self.name):
            raise ControlError(f"param name must be a word like 'walk.speed', got {self.name!r}")
        for key in ("default", "minimum", "maximum", "smoothing"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ControlError(f"param {self.name}: {key} must be a finite number, got {value!r}")
            object.__setattr__(self, key, float(value))
        if not self.minimum <= self.default <= self.maximum:
            raise ControlError(f"param {self.name}: default {self.default} is outside "
                               f"{self.minimum}..{self.maximum}")
        if self.smoothing < 0 or (self.trigger and self.smoothing):
            raise ControlError(f"param {self.name}: smoothing must be >= 0 (and 0 for a trigger), "
                               f"got {self.smoothing}")

    def clamp(self, value: float) -> float:
        return min(max(value, self.minimum), self.maximum)


@dataclass(frozen=True)
class Binding:
    """One row of a show's `[[bind]]` table: which source drives which param, and how."""
    source: str  # "scheme:rest": "osc:/masq/walk/speed", "midi:cc/1/7", "camera:motion"
    target: str  # a declared param name
    input: tuple[float, float] = (0.0, 1.0)  # the raw values that map to the ends of the output range
    curve: str = "linear"  # "linear", or "exp" for things felt as ratios (speed, zoom)
    priority: int = 0  # higher wins; equal: the most recent event wins
    output: tuple[float, float] | None = None  # None: the param's whole range
    where: str = "<code>"  # "shows/x.toml [[bind]] #3": named in every error about this row
    takeover: str = "jump"  # "soft": the control moves its param only once it reaches the param's value
    quantise: str = ""  # a trigger it fires waits for the next "beat" or "bar"; "none": at once; "": the show's

    @classmethod
    def from_table(cls, row: dict, where: str) -> Binding:
        """A `[[bind]]` row of a show file -> a Binding; every mistake names `where` and the key."""
        if not isinstance(row, dict):
            raise ControlError(f"{where}: must be a table with source and target, got {row!r}")
        known = ("source", "target", "input", "curve", "priority", "output", "takeover", "quantise")
        for key in row:
            if key not in known:
                raise ControlError(f"{where}: unknown key {key!r} (expected one of {', '.join(known)})")
        for key in ("source", "target"):
            if not isinstance(row.get(key), str):
                raise ControlError(f"{where}: {key} must be a string, got {row.get(key)!r}")
        values: dict = {"source": row["source"], "target": row["target"], "where": where}
        for key in ("input", "output"):
            if key in row:
                pair = row[key]
                if (not isinstance(pair, list) or len(pair) != 2
                        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in pair)):
                    raise ControlError(f"{where}: {key} must be [low, high], two numbers, got {pair!r}")
                values[key] = (float(pair[0]), float(pair[1]))
        for key in ("curve", "takeover", "quantise"):
            if key in row:
                values[key] = row[key]
        if "priority" in row:
            if isinstance(row["priority"], bool) or not isinstance(row["priority"], int):
                raise ControlError(f"{where}: priority must be a whole number, got {row['priority']!r}")
            values["priority"] = row["priority"]
        return cls(**values)

    @property
    def scheme(self) -> str:
        return self.source.partition(":")[0]

    def check(self, params: Mapping[str, Param]) -> None:
        """Raise a ControlError naming this row if it cannot work with these params."""
        scheme, colon, rest = self.source.partition(":")
        if not colon or scheme not in SCHEMES or not rest:
            raise ControlError(f"{self.where}: unknown source {self.source!r} (expected scheme:name with a scheme "
                               f"among {', '.join(SCHEMES)}, like 'osc:/masq/walk/speed')")
        if scheme == "osc" and (not rest.startswith("/") or OSC_FORBIDDEN & set(rest)):
            raise ControlError(f"{self.where}: source {self.source!r} is not an OSC address "
                               f"(it must start with / and contain none of {''.join(sorted(OSC_FORBIDDEN))})")
        if self.target not in params:
            near = difflib.get_close_matches(self.target, list(params), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f" (declared: {', '.join(sorted(params))})"
            raise ControlError(f"{self.where}: unknown target {self.target!r}{hint}")
        if self.curve not in CURVES:
            raise ControlError(f"{self.where}: curve must be \"linear\" or \"exp\", got {self.curve!r}")
        if self.takeover not in TAKEOVERS:
            raise ControlError(f"{self.where}: takeover must be \"jump\" or \"soft\", got {self.takeover!r}")
        if self.quantise not in QUANTISE:
            raise ControlError(f"{self.where}: quantise must be \"beat\", \"bar\" or \"none\", got {self.quantise!r}")
        if self.input[0] == self.input[1]:
            raise ControlError(f"{self.where}: input range {list(self.input)} is empty")
        p = params[self.target]
        lo, hi = self.output or (p.minimum, p.maximum)
        if self.curve == "exp" and not (lo * hi > 0):
            raise ControlError(f"{self.where}: an exp curve needs an output range on one side of zero, "
                               f"got {lo}..{hi} for {self.target}")

    def map(self, raw: float, param: Param) -> float:
        """Raw input value -> param value (through the input range, the curve, and the param's clamp)."""
        lo, hi = self.output or (param.minimum, param.maximum)
        u = min(max((raw - self.input[0]) / (self.input[1] - self.input[0]), 0.0), 1.0)
        value = lo * (hi / lo) ** u if self.curve == "exp" else lo + u * (hi - lo)
        return param.clamp(value)

    def unmap(self, value: float, param: Param) -> float:
        """Param value -> the raw input value that gives it: where a controller's fader should sit."""
        lo, hi = self.output or (param.minimum, param.maximum)
        if lo == hi:
            u = 0.0
        elif self.curve == "exp":
            u = math.log(value / lo) / math.log(hi / lo) if value / lo > 0 else 0.0
        else:
            u = (value - lo) / (hi - lo)
        u = min(max(u, 0.0), 1.0)
        return self.input[0] + u * (self.input[1] - self.input[0])


@dataclass(frozen=True)
class Event:
    """One input event as the bus applied it: show time, source, raw value (None: the source let go)."""
    t: float
    source: str
    value: float | None


@dataclass(frozen=True)
class Snapshot(Mapping):
    """What the loop sees for one frame: name -> value, plus the triggers that fired since the last frame."""
    t: float
    values: Mapping[str, float]
    triggers: frozenset[str] = frozenset()
    targets: Mapping[str, float] = field(default_factory=dict)  # where each param is heading (before smoothing)
    held_by: Mapping[str, str | None] = field(default_factory=dict)  # which source drives each param

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def fired(self, name: str) -> bool:
        return name in self.triggers


@dataclass
class BusStats:
    """Counters for a status page."""
    applied: int = 0  # events applied to at least one param
    unbound: int = 0  # events from a source no binding names (an OSC address nobody uses)
    rejected: int = 0  # values that were not finite numbers
    overflow: int = 0  # scheduled posts dropped because the queue was full (the loop has stopped reading)
    coalesced: int = 0  # events replaced by a newer one from the same source before a frame applied them


@dataclass
class _State:
    value: float  # what the snapshot shows
    target: float  # what it is heading to
    claims: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # source -> (priority, order, value)
    held_by: str | None = None


class Bus:
    """Declared params, bindings, a queue that any thread may post to, and the state the loop reads."""

    def __init__(self, max_pending: int = 10_000):
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[int, float | None]] = {}  # untimed: source -> (seq, its newest value)
        self._pending: list[tuple[float, int, str, float | None]] = []  # scheduled, not yet in the heap
        self._max_pending = max_pending
        self._trigger_sources: set[str] = set()  # sources bound to a trigger: a press outlives its release
        self._seq = itertools.count()  # post order, the tie-break between events at one time
        self._order = itertools.count()  # application order, for "the most recent event wins"
        self._future: list[tuple[float, int, str, float | None]] = []  # heap of scheduled events (loop only)
        self._params: dict[str, Param] = {}
        self._state: dict[str, _State] = {}
        self._routes: dict[str, list[Binding]] = {}
        self._t: float | None = None  # the show time the state has reached
        self.recording = None  # a record.Recording: every applied event is appended to it
        self.latest: Snapshot | None = None  # the newest snapshot, for feedback and status threads
        self.ever_fired: frozenset[str] = frozenset()  # triggers fired at least once (a cue, not its default)
        self.stats = BusStats()
        self.observer = None  # callable(source, value) told of every post, from the posting thread (MIDI learn)
        self._soft: dict[tuple[str, str], float] = {}  # (source, target) -> its last raw value, for soft takeover

    # --- set-up (the loop's thread, before the show starts) ---

    def declare(self, param: Param) -> None:
        old = self._params.get(param.name)
        if old is not None and old != param:
            raise ControlError(f"param {param.name} is declared twice, differently: {old} and {param}")
        self._params[param.name] = param
        self._state.setdefault(param.name, _State(param.default, param.default))

    def bind(self, binding: Binding) -> None:
        binding.check(self._params)
        routes = self._routes.setdefault(binding.source, [])
        for other in routes:
            if other.target == binding.target:
                raise ControlError(f"{binding.where}: {binding.source} is already bound to {binding.target} "
                                   f"by {other.where}")
        routes.append(binding)
        if self._params[binding.target].trigger:
            self._trigger_sources.add(binding.source)

    @property
    def params(self) -> Mapping[str, Param]:
        return MappingProxyType(self._params)

    @property
    def bindings(self) -> list[Binding]:
        return [b for routes in self._routes.values() for b in routes]

    def routes(self, source: str) -> tuple[Binding, ...]:
        """The bindings of one source (empty: nobody listens); any thread may ask once the show runs."""
        return tuple(self._routes.get(source, ()))

    @property
    def pending(self) -> int:
        """Events posted and not yet taken by a snapshot (untimed ones count once per source)."""
        return len(self._latest) + len(self._pending)

    @property
    def waiting(self) -> int:
        """Scheduled events held for a future show time."""
        return len(self._future)

    # --- any thread ---

    def post(self, source: str, value: float, at: float | None = None) -> None:
        """Enqueue an event; `at` is a show time for scheduled events (None: the next frame). Never blocks long."""
        self._enqueue(at, source, value)

    def release(self, source: str, at: float | None = None) -> None:
        """Withdraw a source's claim on its params (a device disconnected); the next source in line takes over."""
        self._enqueue(at, source, None)

    def _enqueue(self, at, source, value) -> None:
        if self.observer is not None:
            self.observer(source, value)
        bound = source in self._routes
        bad = value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                     or not math.isfinite(value))
        with self._lock:
            if not bound:
                self.stats.unbound += 1
            elif bad:
                self.stats.rejected += 1
            elif at is None:  # applies at the next snapshot's time: only the newest value can show
                old = self._latest.get(source)
                if old is not None:
                    self.stats.coalesced += 1
                    if not value and old[1] and source in self._trigger_sources:
                        return  # a press, then its release, in one frame: the press fires
                self._latest[source] = (next(self._seq), value)
            elif len(self._pending) >= self._max_pending:
                self.stats.overflow += 1
            else:
                self._pending.append((at, next(self._seq), source, value))

    # --- the render loop, once per frame ---

    def snapshot(self, t: float) -> Snapshot:
        """Apply every event due at or before show time `t`, and return the params as of `t`."""
        with self._lock:
            latest, self._latest = self._latest, {}
            arrived, self._pending = self._pending, []
        for event in arrived:
            heapq.heappush(self._future, event)
        before = self._t
        now = t if before is None else max(t, before)  # show time never runs backwards here
        due = [(now, seq, source, value) for source, (seq, value) in latest.items()]
        scheduled = 0
        while self._future and self._future[0][0] <= t:
            at, seq, source, value = heapq.heappop(self._future)
            late = before is not None and at <= before
            due.append((now if late else at, seq, source, value))
            scheduled += 1
        due.sort()
        if scheduled > MAX_DUE:
            due = self._coalesce(due)

        fired: set[str] = set()
        for when, _, source, value in due:
            routes = self._routes.get(source, ())  # a live rebind may have dropped it since the post
            self._advance(when)
            for binding in routes:
                self._apply(binding, source, value, fired)
            self.stats.applied += 1
            if self.recording is not None and not source.startswith(DERIVED):
                self.recording.append(Event(when, source, None if value is None else float(value)))
        self._advance(now)

        snap = Snapshot(t=t, values=MappingProxyType({n: s.value for n, s in self._state.items()}),
                        triggers=frozenset(fired),
                        targets=MappingProxyType({n: s.target for n, s in self._state.items()}),
                        held_by=MappingProxyType({n: s.held_by for n, s in self._state.items()}))
        self.latest = snap  # one reference assignment: other threads see the old or the new snapshot
        if not fired <= self.ever_fired:
            self.ever_fired = self.ever_fired | fired
        return snap

    def _coalesce(self, due: list) -> list:
        """A flood of due events (time order) -> the newest per source, at its own time; a trigger source
        keeps its newest press over a later release."""
        keep: dict[str, tuple] = {}
        for event in due:
            old = keep.get(event[2])
            if old is not None and not event[3] and old[3] and event[2] in self._trigger_sources:
                continue
            keep[event[2]] = event
        self.stats.coalesced += len(due) - len(keep)
        return sorted(keep.values())

    def _apply(self, binding: Binding, source: str, value: float | None, fired: set[str]) -> None:
        param, state = self._params[binding.target], self._state[binding.target]
        if param.trigger:
            if value is not None and value != 0:  # 0 is a button's release
                state.value = state.target = binding.map(value, param)
                state.held_by = source
                fired.add(param.name)
            return
        if value is None:
            state.claims.pop(source, None)
        elif binding.takeover == "soft" and not self._picks_up(binding, source, value, param, state):
            return  # soft takeover: the control has not reached the param's value yet; the param stays
        else:
            state.claims[source] = (binding.priority, next(self._order), binding.map(value, param))
        if state.claims:
            winner = max(state.claims, key=lambda s: state.claims[s][:2])  # priority, then recency
            state.target, state.held_by = state.claims[winner][2], winner
        else:
            state.held_by = None  # nobody drives it: hold where it is
        if param.smoothing == 0:
            state.value = state.target

    def _picks_up(self, binding: Binding, source: str, raw: float, param: Param, state: _State) -> bool:
        """Soft takeover: True when the control holds the param already, is within two MIDI steps of where the
        param's value puts it, or has crossed that point since its previous value."""
        key = (source, binding.target)
        before, self._soft[key] = self._soft.get(key), raw
        if state.held_by == source:
            return True
        here = binding.unmap(state.target, param)  # where the control would sit for the param's value
        if abs(raw - here) <= abs(binding.input[1] - binding.input[0]) / 64:
            return True
        return before is not None and (before - here) * (raw - here) <= 0

    def rebind(self, source: str, bindings) -> None:
        """Replace a source's bindings while the show runs (MIDI learn), from any thread: the rows are checked
        first, then the routing table is swapped whole, so a reader sees the old table or the new one."""
        for b in bindings:
            if b.source != source:
                raise ControlError(f"{b.where}: rebind {source}: the row's source is {b.source}")
            b.check(self._params)
        with self._lock:
            routes = dict(self._routes)
            if bindings:
                routes[source] = list(bindings)
            else:
                routes.pop(source, None)
            self._routes = routes
            if any(self._params[b.target].trigger for b in bindings):
                self._trigger_sources.add(source)

    def _advance(self, to: float) -> None:
        """Move smoothed params along their exponential approach from the state's time to `to`."""
        if self._t is not None and to > self._t:
            dt = to - self._t
            for name, state in self._state.items():
                tau = self._params[name].smoothing
                if tau > 0 and state.value != state.target:
                    state.value = state.target + (state.value - state.target) * math.exp(-dt / tau)
        if self._t is None or to > self._t:
            self._t = to


def declare_all(bus: Bus, params, bindings=()) -> Bus:
    """Declare params and bind rows in one call (the order a show file needs: params first)."""
    for p in params:
        bus.declare(p)
    for b in bindings:
        bus.bind(b)
    return bus


def with_default(param: Param, default: float) -> Param:
    """The same param starting elsewhere (a show's `[walk] speed = 2` becomes walk.speed's default)."""
    return replace(param, default=param.clamp(default))
