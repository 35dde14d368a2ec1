"""Tools on the latent space between the walk and the generator: GANSpace directions
(`directions.py`) and bookmarked points with latent arithmetic (`bookmarks.py`).

Both are tied to one model file by its sha256 (`file_sha256`): a direction or a bookmark means nothing
to another model, so what was made for one is never silently used with another.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
