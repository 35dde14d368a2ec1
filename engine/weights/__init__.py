"""Published weights on the user's own machine: a pinned catalogue, a cache folder, `weights:NAME` in shows.

    masquerade weights list              what there is, its size, licence, purpose, and whether it is here
    masquerade weights get googlenet     fetch it (resumes, checks the sha256 before keeping it)

Files land in `MASQUERADE_WEIGHTS_DIR`, else `$XDG_CACHE_HOME/masquerade/weights`, else
`~/.cache/masquerade/weights`, under the name they were published with. A show writes
`path = "weights:googlenet"`; loading it resolves that to the cached file and never downloads: a file not
fetched yet is a one-line error giving the `masquerade weights get NAME` command (docs/weights.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.weights.catalogue import Entry, WeightsError, get, load

PREFIX = "weights:"
DIR_ENV = "MASQUERADE_WEIGHTS_DIR"
MIRROR_ENV = "MASQUERADE_WEIGHTS_MIRROR"


def cache_dir() -> Path:
    """Where fetched weights live (created by `weights get`, not here)."""
    chosen = os.environ.get(DIR_ENV, "").strip()
    if chosen:
        return Path(chosen).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"  # XDG: relative is ignored
    return base / "masquerade" / "weights"


def cached(entry: Entry) -> Path:
    """Where `entry`'s file is (or will be) in the cache folder."""
    return cache_dir() / entry.filename


def resolve(name: str) -> Path:
    """The cached file of catalogue entry `name`, for a show's `weights:NAME`; it never downloads. A file
    is in the cache only after its sha256 matched (`download.fetch` renames it there last); its size is
    checked again here, as that costs nothing."""
    entry = get(name)
    path = cached(entry)
    if not path.is_file():
        raise WeightsError(f"weights:{name} is not downloaded yet; run: masquerade weights get {name}")
    if entry.size is not None and path.stat().st_size != entry.size:
        raise WeightsError(f"weights:{name}: {path} is {path.stat().st_size:,} bytes, not the catalogue's "
                           f"{entry.size:,}; run: masquerade weights get {name}")
    return path


__all__ = ["DIR_ENV", "Entry", "MIRROR_ENV", "PREFIX", "WeightsError", "cache_dir", "cached", "get", "load",
           "resolve"]
