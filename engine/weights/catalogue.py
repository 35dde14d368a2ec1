"""The weights catalogue: published files by name, each pinned by its whole sha256 (`catalogue.toml`).

Read once per command and checked field by field into `Entry` dataclasses: a catalogue URL is https, a
sha256 is 64 hex digits, a size (when given) is a positive whole number of bytes, the licence and purpose
are written. `MASQUERADE_WEIGHTS_CATALOGUE` points at another TOML of the same form (tests, or a studio's
own list). Where files land and how a show names them: `engine/weights/__init__.py`.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

from engine.errors import MasqueradeError

CATALOGUE = Path(__file__).resolve().parent / "catalogue.toml"
CATALOGUE_ENV = "MASQUERADE_WEIGHTS_CATALOGUE"
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
SHA256 = re.compile(r"[0-9a-f]{64}")
FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class WeightsError(MasqueradeError):
    """A catalogue, a name or a download that cannot be used; one line for the person at the terminal."""


@dataclass(frozen=True)
class Entry:
    name: str
    url: str  # https, as published
    sha256: str  # the whole file's, lower-case hex
    licence: str
    purpose: str  # what it is for, one line
    filter: str  # the [[filters]] kind that reads it (engine/filters/__init__.py)
    reader: str  # the code that reads it
    source: str  # where the sha256 was published
    size: int | None = None  # bytes, checked when given
    approx_mb: float | None = None  # for `weights list` when the exact size is not published
    file: str = ""  # the name in the cache folder (default: the URL's last part)

    @property
    def filename(self) -> str:
        return self.file or urlsplit(self.url).path.rsplit("/", 1)[-1]

    def size_text(self) -> str:
        if self.size is not None:
            return _megabytes(self.size)
        if self.approx_mb is not None:
            return f"~{self.approx_mb:g} MB"
        return "?"


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 10e6 else f"{n / 1e6:.0f} MB"


def _check(name: str, raw, where: str) -> Entry:
    here = f"{where} [{name}]"
    if not NAME.fullmatch(name):
        raise WeightsError(f"{here}: a name is lower-case letters, digits, '.', '_' or '-' (at most 64)")
    if not isinstance(raw, dict):
        raise WeightsError(f"{here}: must be a table")
    known = {f.name for f in fields(Entry)} - {"name"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise WeightsError(f"{here}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    for key in ("url", "sha256", "licence", "purpose", "filter", "reader", "source"):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise WeightsError(f"{here}: {key} must be a non-empty string")
    parts = urlsplit(raw["url"])
    if parts.scheme != "https" or not parts.hostname or not parts.path.rsplit("/", 1)[-1]:
        raise WeightsError(f"{here}: url must be https://HOST/.../FILE, got {raw['url']!r}")
    if not SHA256.fullmatch(raw["sha256"]):
        raise WeightsError(f"{here}: sha256 must be 64 lower-case hex digits (the whole file's digest), "
                           f"got {raw['sha256']!r}")
    size = raw.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise WeightsError(f"{here}: size must be a positive whole number of bytes, got {size!r}")
    approx = raw.get("approx_mb")
    if approx is not None and (isinstance(approx, bool) or not isinstance(approx, (int, float)) or approx <= 0):
        raise WeightsError(f"{here}: approx_mb must be a positive number, got {approx!r}")
    entry = Entry(name=name, **{k: v for k, v in raw.items()})
    if not FILE.fullmatch(entry.filename) or entry.filename.endswith(".part"):
        raise WeightsError(f"{here}: the cache file name {entry.filename!r} must be letters, digits, '.', '_' "
                           "or '-' (set file = \"...\")")
    from engine import filters

    if entry.filter not in filters.names():
        raise WeightsError(f"{here}: filter must be a [[filters]] kind ({', '.join(filters.names())}), "
                           f"got {entry.filter!r}")
    return entry


def path() -> Path:
    """The catalogue file in use: `MASQUERADE_WEIGHTS_CATALOGUE`, else the one shipped beside this module."""
    chosen = os.environ.get(CATALOGUE_ENV, "").strip()
    return Path(chosen).expanduser() if chosen else CATALOGUE


def load(source: str | Path | None = None) -> dict[str, Entry]:
    """The entries of a catalogue TOML by name, every field checked; errors name the file and the entry."""
    source = Path(source) if source is not None else path()
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"{source}: no such weights catalogue") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise WeightsError(f"{source}: not a valid catalogue TOML ({e})") from None
    entries = {name: _check(name, raw, str(source)) for name, raw in data.items()}
    files = [e.filename for e in entries.values()]
    twice = sorted({f for f in files if files.count(f) > 1})
    if twice:
        raise WeightsError(f"{source}: two entries share the cache file name {twice[0]!r}")
    return entries


def get(name: str, entries: dict[str, Entry] | None = None) -> Entry:
    """The entry called `name`; an unknown name lists the names there are."""
    entries = load() if entries is None else entries
    if name not in entries:
        raise WeightsError(f"no weights called {name!r} in the catalogue; known: {', '.join(sorted(entries))}")
    return entries[name]
