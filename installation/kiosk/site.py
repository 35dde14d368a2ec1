"""The site file: one TOML file per installation (what plays, when, how the supervisor behaves).

Every error names the file and the key, like show files do. Paths are relative to the site file's
folder, or to the project root when they are not found there (so "shows/default.toml" works anywhere).
See installation/example-site.toml for every key with a comment.
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from installation.kiosk.schedule import Hours, parse_hours

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
TOKEN_ENV = "MASQUERADE_KIOSK_TOKEN"


class SiteError(ValueError):
    """A site file that cannot be used; the message names the file and the key."""


@dataclass
class Entry:
    show: Path
    seconds: float | None  # None: until a cue, a file change or the end of the day


@dataclass
class Watchdog:
    heartbeat_timeout: float = 10.0  # no new frame for this long: the engine is hung, kill it
    startup_timeout: float = 90.0  # no first frame this long after a start: count it as a failure
    backoff_initial: float = 1.0  # the second consecutive failure waits this long, doubling after
    backoff_max: float = 60.0
    healthy_after: float = 30.0  # running this long with frames: the failure count starts again at 0
    failures_before_safe: int = 3  # consecutive failures before the safe show plays
    safe_retry_minutes: float = 10.0  # in safe mode, try the scheduled show again after this long
    reload_within: float = 60.0  # a valid show edit plays from the next scene cue, or after this long (0: at once)
    validate_seconds: float = 60.0  # an edit is validated (model and filters built, a frame drawn) within this
    validate_memory_mb: float = 8192.0  # ... in a process of at most this much address space (MB)


@dataclass
class Status:
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 8080
    token: str | None = None  # from the site file's `token`, or the environment variable `token_env`


@dataclass
class Attract:
    show: Path | None = None  # None: no attract mode
    after: float = 60.0  # seconds the camera has seen nobody (camera:presence 0) before it plays


@dataclass
class Crowd:
    """Crowd steering: phones vote a direction (x, y in -1..1) on their own page; the mean of each phone's
    latest vote (within `window` seconds) goes to the engine as OSC on `x_address` and `y_address`."""
    enabled: bool = False
    host: str = "0.0.0.0"
    port: int = 8081
    window: float = 10.0  # a phone's vote counts this many seconds after it was sent
    votes_per_second: float = 5.0  # per phone (its cookie); more are answered 429 and not counted
    phones_per_address: int = 1  # an address counts as this many phones at most (more behind a NAT)
    forget_after: float = 600.0  # seconds a phone's token lives after its last vote (its cookie too)
    send_per_second: float = 10.0  # OSC messages to the engine, per address
    x_address: str = "/masq/direction/1"
    y_address: str = "/masq/direction/2"


@dataclass
class Site:
    name: str
    source: Path
    playlist: list[Entry]
    safe_show: Path
    command: list[str]  # the engine's command line up to (not including) `run`
    args: list[str]  # more arguments for `masquerade run` (--fullscreen, --display 1, --size ...)
    state_dir: Path
    log_dir: Path
    log_max_bytes: int = 1_000_000
    closed: str = "black"  # outside opening hours: "black", a picture's path (a still), or "off" (the desktop)
    transition: float = 2.0  # seconds of cross-fade when the engine switches shows (playlist, attract, reload)
    log_backups: int = 5
    hours: Hours | None = None  # None: always open
    watchdog: Watchdog = field(default_factory=Watchdog)
    status: Status = field(default_factory=Status)
    attract: Attract = field(default_factory=Attract)
    crowd: Crowd = field(default_factory=Crowd)

    def shows(self) -> list[Path]:
        return [e.show for e in self.playlist] + ([self.attract.show] if self.attract.show else [])


def _path(text, base: Path, key: str) -> Path:
    if not isinstance(text, str) or not text:
        raise SiteError(f"{key}: expected a path (a string), got {text!r}")
    p = Path(text).expanduser()
    if p.is_absolute():
        return p
    if (base / p).exists() or not (PROJECT_ROOT / p).exists():
        return (base / p).resolve()
    return (PROJECT_ROOT / p).resolve()


def _table(data: dict, name: str, where: str, keys: set[str]) -> dict:
    raw = data.get(name, {})
    if not isinstance(raw, dict):
        raise SiteError(f"{where}: [{name}] must be a table, got {type(raw).__name__}")
    unknown = set(raw) - keys
    if unknown:
        raise SiteError(f"{where}: unknown key {name}.{sorted(unknown)[0]} (expected one of {', '.join(sorted(keys))})")
    return raw


def _number(raw: dict, key: str, default, where: str, kind=float, minimum=0.0):
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise SiteError(f"{where}: {key} must be a {'whole ' if kind is int else ''}number, got {value!r}")
    if value < minimum:
        raise SiteError(f"{where}: {key} must be at least {minimum}, got {value!r}")
    return kind(value)


def _strings(value, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SiteError(f"{key}: expected a list of strings, got {value!r}")
    return list(value)


def load(path: str | Path, env: dict | None = None) -> Site:
    path = Path(path).resolve()
    env = os.environ if env is None else env
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SiteError(f"{path}: cannot read the site file ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise SiteError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise SiteError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    where, base = str(path), path.parent
    top = {"name", "state_dir", "log_dir", "engine", "watchdog", "logs", "hours", "playlist", "status", "attract",
           "crowd"}
    unknown = set(data) - top
    if unknown:
        raise SiteError(f"{where}: unknown key {sorted(unknown)[0]!r} at top level (expected {', '.join(sorted(top))})")
    name = data.get("name", path.stem)
    if not isinstance(name, str):
        raise SiteError(f"{where}: name must be a string")

    engine = _table(data, "engine", where, {"command", "args", "safe_show", "closed", "transition"})
    transition = _number(engine, "transition", 2.0, f"{where}: engine")
    if transition > 60:
        raise SiteError(f"{where}: engine.transition must be at most 60 seconds, got {transition!r}")
    command = _strings(engine.get("command", [sys.executable, "-m", "engine.cli"]), f"{where}: engine.command")
    if not command:
        raise SiteError(f"{where}: engine.command must not be empty")
    args = _strings(engine.get("args", []), f"{where}: engine.args")
    safe_show = _path(engine.get("safe_show", "shows/default.toml"), base, f"{where}: engine.safe_show")
    closed = engine.get("closed", "black")
    if not isinstance(closed, str) or not closed:
        raise SiteError(f"{where}: engine.closed must be \"black\", \"off\" or a picture's path, got {closed!r}")
    if closed not in ("black", "off"):
        picture = _path(closed, base, f"{where}: engine.closed")
        if not picture.is_file():
            raise SiteError(f"{where}: engine.closed: {picture}: no such picture")
        closed = str(picture)

    raw_playlist = data.get("playlist", [])
    if not isinstance(raw_playlist, list) or not raw_playlist:
        raise SiteError(f"{where}: [[playlist]] needs at least one entry (show = \"shows/...\", minutes = 20)")
    playlist = []
    for i, row in enumerate(raw_playlist):
        key = f"{where}: playlist[{i}]"
        if not isinstance(row, dict) or set(row) - {"show", "minutes"} or "show" not in row:
            raise SiteError(f"{key}: expected a table with show = \"...\" and optionally minutes = N, got {row!r}")
        minutes = row.get("minutes")
        if minutes is not None:
            minutes = _number(row, "minutes", None, key, minimum=0.01)
        playlist.append(Entry(_path(row["show"], base, f"{key}.show"), None if minutes is None else minutes * 60))

    wd = _table(data, "watchdog", where, set(Watchdog.__dataclass_fields__))
    defaults = Watchdog()
    minimum = {"failures_before_safe": 1, "validate_seconds": 1.0, "validate_memory_mb": 512.0}
    watchdog = Watchdog(**{k: _number(wd, k, getattr(defaults, k), f"{where}: watchdog",
                                      kind=int if k == "failures_before_safe" else float, minimum=minimum.get(k, 0.0))
                           for k in Watchdog.__dataclass_fields__})

    logs = _table(data, "logs", where, {"max_bytes", "backups"})
    hours_raw = data.get("hours")
    if hours_raw is not None and not isinstance(hours_raw, dict):
        raise SiteError(f"{where}: [hours] must be a table of days")
    try:
        hours = None if hours_raw is None else parse_hours(hours_raw, f"{where}: hours")
    except ValueError as e:
        raise SiteError(str(e)) from None

    st = _table(data, "status", where, {"enabled", "host", "port", "token", "token_env"})
    token_env = st.get("token_env", TOKEN_ENV)
    token = st.get("token") or env.get(token_env) or None
    if token is not None and (not isinstance(token, str) or len(token) < 8):
        raise SiteError(f"{where}: status.token must be a string of at least 8 characters")
    status = Status(enabled=bool(st.get("enabled", True)), host=str(st.get("host", "0.0.0.0")),
                    port=_number(st, "port", 8080, f"{where}: status", kind=int), token=token)

    at = _table(data, "attract", where, {"show", "after"})
    attract = Attract(show=_path(at["show"], base, f"{where}: attract.show") if "show" in at else None,
                      after=_number(at, "after", 60.0, f"{where}: attract", minimum=0.1))

    cr = _table(data, "crowd", where, set(Crowd.__dataclass_fields__))
    crowd = Crowd(enabled=bool(cr.get("enabled", False)), host=str(cr.get("host", "0.0.0.0")),
                  port=_number(cr, "port", 8081, f"{where}: crowd", kind=int),
                  window=_number(cr, "window", 10.0, f"{where}: crowd", minimum=0.1),
                  votes_per_second=_number(cr, "votes_per_second", 5.0, f"{where}: crowd", minimum=0.1),
                  phones_per_address=_number(cr, "phones_per_address", 1, f"{where}: crowd", kind=int, minimum=1),
                  forget_after=_number(cr, "forget_after", 600.0, f"{where}: crowd", minimum=1.0),
                  send_per_second=_number(cr, "send_per_second", 10.0, f"{where}: crowd", minimum=0.1),
                  x_address=str(cr.get("x_address", "/masq/direction/1")),
                  y_address=str(cr.get("y_address", "/masq/direction/2")))
    for key in ("x_address", "y_address"):
        if not getattr(crowd, key).startswith("/"):
            raise SiteError(f"{where}: crowd.{key} must be an OSC address (starting with /)")
    if crowd.enabled and status.enabled and crowd.port == status.port:
        raise SiteError(f"{where}: crowd.port must differ from status.port (no staff controls on the crowd's port)")

    return Site(name=name, source=path, playlist=playlist, safe_show=safe_show, command=command, args=args,
                closed=closed, transition=transition,
                state_dir=_path(data.get("state_dir", "state"), base, f"{where}: state_dir"),
                log_dir=_path(data.get("log_dir", "logs"), base, f"{where}: log_dir"),
                log_max_bytes=_number(logs, "max_bytes", 1_000_000, f"{where}: logs", kind=int, minimum=10_000),
                log_backups=_number(logs, "backups", 5, f"{where}: logs", kind=int, minimum=1),
                hours=hours, watchdog=watchdog, status=status, attract=attract, crowd=crowd)
