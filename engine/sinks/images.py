"""PNG sequence: `frame_000000.png`, ... lossless, one file per tick (named by the tick's index).

Frames are written into `FOLDER.partial` and moved into `FOLDER` by `close()`, so an interrupted or failed
render leaves nothing in the folder asked for. The partial folder is made when the writer is: a place that
cannot be written fails before any frame is drawn.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from engine.sinks import make_folder


def partial_path(folder: str | Path) -> Path:
    folder = Path(folder)
    return folder.with_name(f"{folder.name}.partial")


class Writer:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.partial = partial_path(self.folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "a file is in the way of this folder", str(self.folder))
        make_folder(self.partial.parent)
        shutil.rmtree(self.partial, ignore_errors=True)  # what an earlier interrupted render left
        self.partial.mkdir()
        self.count = 0

    def write(self, rgb: np.ndarray, tick) -> None:
        Image.fromarray(rgb).save(self.partial / f"frame_{tick.index:06d}.png", compress_level=1)
        self.count += 1

    def close(self) -> None:
        """Move the frames into the folder (a full disk on the way raises; the partial folder is removed)."""
        if not self.partial.exists():
            return
        try:
            self.folder.mkdir(exist_ok=True)
            for path in sorted(self.partial.iterdir()):
                os.replace(path, self.folder / path.name)
            self.partial.rmdir()
        except BaseException:
            shutil.rmtree(self.partial, ignore_errors=True)
            raise

    def interrupt(self, keep: bool = True) -> Path | None:
        """End early without touching the folder: with `keep`, the frames so far stay in the partial folder
        (returned); otherwise it is removed."""
        if keep and self.count and self.partial.exists():
            return self.partial
        shutil.rmtree(self.partial, ignore_errors=True)
        return None
