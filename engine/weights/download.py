"""Fetching one catalogue entry into the cache folder, with the standard library's urllib.

The bytes go to `FILE.part` beside the final name. A transfer that breaks off is resumed with an HTTP
`Range: bytes=N-` request, a few times in one command and again by the next `weights get` (the `.part`
stays); a server that ignores Range (answers 200 with the whole file) is read from the start again. When
the last byte is in, the whole file's sha256 is compared with the catalogue's: a match is renamed to the
final name (so a file in the cache has always been checked), a mismatch is deleted and refused. A size
the catalogue gives is checked as soon as the server states one, and a server sending more bytes than it
is stopped. One `weights get` at a time per cache folder (its `.lock` file).

`mirror` replaces the scheme and host of the catalogue URL (and puts its own path in front):
`http://127.0.0.1:8000` turns `https://download.pytorch.org/models/x.pth` into
`http://127.0.0.1:8000/models/x.pth`. The digest is checked the same way whatever the host.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit, urlunsplit
from urllib.request import Request, urlopen

from engine.latent import file_sha256
from engine.weights.catalogue import Entry, WeightsError, _megabytes

CHUNK = 1 << 16
ATTEMPTS = 3  # transfers per command before the .part is left for the next `weights get`
TIMEOUT = 30.0  # seconds without a byte before a transfer counts as broken off
USER_AGENT = "masquerade/0.1 (weights get; Python urllib)"


class _Broken(Exception):
    """A transfer that stopped before its end; the .part is kept and resumed."""


def mirrored(url: str, mirror: str | None) -> str:
    """`url` with its scheme and host replaced by `mirror`'s (whose path, if any, goes in front)."""
    if not mirror:
        return url
    m, u = urlsplit(mirror), urlsplit(url)
    if m.scheme not in ("http", "https") or not m.netloc or m.query or m.fragment:
        raise WeightsError(f"--mirror must be http(s)://HOST[:PORT][/PATH], got {mirror!r}")
    return urlunsplit((m.scheme, m.netloc, m.path.rstrip("/") + u.path, u.query, ""))


def verified(path: Path, entry: Entry) -> bool:
    """Whether `path` is `entry`'s file: its size (when the catalogue gives one) and its whole sha256."""
    if entry.size is not None and path.stat().st_size != entry.size:
        return False
    return file_sha256(path) == entry.sha256


@contextlib.contextmanager
def _locked(lock: Path, say: Callable[[str], None]):
    try:
        import fcntl
    except ImportError:  # no flock (Windows): one get at a time is then the user's care
        yield
        return
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another `masquerade weights get` in {lock.parent} to finish")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Progress:
    """A one-line meter on a terminal (stderr), redrawn at most ten times a second; silent otherwise."""

    def __init__(self, name: str, stream: TextIO | None):
        self.name, self.stream, self.last, self.drawn = name, stream, 0.0, False
        self.live = stream is not None and stream.isatty()

    def __call__(self, have: int, total: int | None, final: bool = False) -> None:
        now = time.monotonic()
        if not self.live or (not final and now - self.last < 0.1):
            return
        self.last = now
        shown = f"{_megabytes(have)} of {_megabytes(total)} ({100 * have // total}%)" if total else _megabytes(have)
        self.stream.write(f"\r{self.name}: {shown}\033[K")
        self.stream.flush()
        self.drawn = True

    def done(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def fetch(entry: Entry, folder: Path, mirror: str | None = None, say: Callable[[str], None] = print,
          meter: TextIO | None = sys.stderr, attempts: int = ATTEMPTS, timeout: float = TIMEOUT) -> tuple[Path, bool]:
    """(`entry`'s file in `folder`, whether it was downloaded now). Already there and verified: nothing is
    fetched. `say` gets the lines a person wants to read (resuming, starting over); `meter` the progress."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / entry.filename
    part = folder / (entry.filename + ".part")
    with _locked(folder / ".lock", say):
        if final.is_file():
            if verified(final, entry):
                return final, False
            final.unlink()
            say(f"{entry.name}: {final} does not match its sha256 any more; fetching it again")
        url = mirrored(entry.url, mirror)
        kept = part.stat().st_size if part.is_file() else 0
        say(f"{entry.name}: downloading {url}" + (f", resuming at {kept:,} bytes" if kept else ""))
        progress = Progress(entry.name, meter)
        try:
            for attempt in range(1, attempts + 1):
                try:
                    _transfer(entry, url, part, progress, say, timeout)
                    break
                except _Broken as e:
                    have = part.stat().st_size if part.exists() else 0
                    if attempt == attempts:
                        of = f" of {entry.size:,}" if entry.size else ""
                        raise WeightsError(f"weights {entry.name}: the download broke off at {have:,}{of} bytes "
                                           f"({e}); run `masquerade weights get {entry.name}` again to resume") \
                            from None
                    progress.done()
                    say(f"{entry.name}: the transfer broke off at {have:,} bytes ({e}); resuming "
                        f"(try {attempt + 1} of {attempts})")
        finally:
            progress.done()
        digest = file_sha256(part)
        if digest != entry.sha256:
            part.unlink()
            raise WeightsError(f"weights {entry.name}: sha256 {digest[:16]}... is not the catalogue's "
                               f"{entry.sha256[:16]}...: refused, nothing kept (from {url})")
        os.replace(part, final)
        return final, True


def _transfer(entry: Entry, url: str, part: Path, progress: Progress, say: Callable[[str], None],
              timeout: float) -> None:
    """Bring `part` up to the whole file, resuming from its size; raises `_Broken` when cut off."""
    have = part.stat().st_size if part.exists() else 0
    if entry.size is not None and have >= entry.size:
        if have == entry.size:
            return  # all there from an earlier try: the digest decides
        part.unlink()  # longer than the file can be: not a piece of it
        have = 0
    request = Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urlopen(request, timeout=timeout)
    except HTTPError as e:
        if e.code == 416 and have:  # the server has no bytes past ours: the .part is not a prefix of its file
            part.unlink()
            raise _Broken("the server cannot resume from there; starting over") from None
        raise WeightsError(f"weights {entry.name}: {url}: HTTP {e.code} {e.reason}") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise _Broken(str(e) or type(e).__name__) from None
    except URLError as e:
        raise WeightsError(f"weights {entry.name}: cannot reach {urlsplit(url).netloc} ({e.reason})") from None
    with response:
        mode = "ab"
        if have and response.status == 206:
            found = re.fullmatch(r"bytes (\d+)-\d+/(?:\d+|\*)", response.headers.get("Content-Range", "").strip())
            if not found or int(found[1]) != have:
                part.unlink()
                raise _Broken("the server answered with another range; starting over")
        elif response.status == 200:
            if have:
                say(f"{entry.name}: the server ignored the Range request (it cannot resume); starting over")
            mode, have = "wb", 0
        else:
            raise WeightsError(f"weights {entry.name}: {url}: unexpected HTTP {response.status}")
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else entry.size
        if entry.size is not None and total != entry.size:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            raise WeightsError(f"weights {entry.name}: {url} is {total:,} bytes, not the catalogue's "
                               f"{entry.size:,}: refused, nothing kept")
        with open(part, mode) as f:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (http.client.IncompleteRead, TimeoutError, ConnectionError) as e:
                    f.flush()
                    raise _Broken(type(e).__name__) from None
                if not chunk:
                    break
                f.write(chunk)
                have += len(chunk)
                if total is not None and have > total:
                    f.close()
                    part.unlink()
                    raise WeightsError(f"weights {entry.name}: {url} sent more than {total:,} bytes: refused, "
                                       "nothing kept")
                progress(have, total)
            f.flush()
            os.fsync(f.fileno())
        progress(have, total, final=True)
    if total is not None and have < total:
        raise _Broken(f"the connection closed at {have:,} of {total:,} bytes")
