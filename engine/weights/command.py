"""`masquerade weights`: the published weights a show can name as `weights:NAME`.

    masquerade weights list                     name, size, licence, here or not, what it is for
    masquerade weights get NAME [NAME ...]      fetch into the cache folder (resumes; sha256 checked)
    masquerade weights path NAME                the cached file's path (for scripts)

`--mirror URL` (or MASQUERADE_WEIGHTS_MIRROR) fetches from another host with the same paths; the sha256
is checked the same way. MASQUERADE_WEIGHTS_DIR moves the cache folder; MASQUERADE_WEIGHTS_CATALOGUE
reads another catalogue TOML. docs/weights.md.
"""

from __future__ import annotations

import argparse
import os


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="list and fetch published weights (GoogLeNet, Inception v3, Real-ESRGAN) "
                                       "into a cache folder; shows name them weights:NAME (docs/weights.md)")
    p.add_argument("action", choices=["list", "get", "path"],
                   help="list: the catalogue and what is already here; get NAME...: download and check; "
                        "path NAME: where the fetched file is")
    p.add_argument("names", nargs="*", metavar="NAME", help="catalogue names (`masquerade weights list`)")
    p.add_argument("--mirror", metavar="URL", help="fetch from this scheme://host[:port][/path] instead of the "
                                                  "catalogue's host (default: MASQUERADE_WEIGHTS_MIRROR)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from engine import weights
    from engine.cli import UsageError

    entries = weights.load()
    if args.action == "list":
        if args.names:
            raise UsageError(f"weights list takes no names, got {' '.join(args.names)}")
        _list(entries)
        return
    if not args.names:
        raise UsageError(f"weights {args.action}: give a name; known: {', '.join(sorted(entries))}")
    chosen = [weights.get(name, entries) for name in args.names]  # every name checked before any download
    if args.action == "path":
        for entry in chosen:
            print(weights.resolve(entry.name))
        return
    from engine.weights import download

    mirror = args.mirror or os.environ.get(weights.MIRROR_ENV, "").strip() or None
    download.mirrored(chosen[0].url, mirror)  # a malformed --mirror is refused before anything happens
    for entry in chosen:
        path, fetched = download.fetch(entry, weights.cache_dir(), mirror)
        if fetched:
            print(f"{entry.name}: saved {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 checked); "
                  f"in a show: path = \"weights:{entry.name}\"")
        else:
            print(f"{entry.name}: already here and verified, nothing downloaded: {path}")


def _list(entries) -> None:
    from engine import weights

    folder = weights.cache_dir()
    rows = []
    for entry in sorted(entries.values(), key=lambda e: (e.filter, e.name)):
        path = folder / entry.filename
        part = folder / (entry.filename + ".part")
        if path.is_file():
            here = "yes"
        elif part.is_file() and entry.size:
            here = f"{100 * part.stat().st_size // entry.size}% (get resumes)"
        elif part.is_file():
            here = "partly"
        else:
            here = "no"
        rows.append((entry.name, entry.size_text(), entry.licence, here, entry.filter, entry.purpose))
    head = ("NAME", "SIZE", "LICENCE", "HERE", "FILTER", "FOR")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    for row in [head, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[5])
    print(f"\ncache folder: {folder} (set {weights.DIR_ENV} to move it)")
    print("fetch one: masquerade weights get NAME; use it in a show: path = \"weights:NAME\"")
