"""PNG sequence: `frame_000000.png`, ... lossless, one file per tick (named by the tick's index)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


class Writer:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def write(self, rgb: np.ndarray, tick) -> None:
        Image.fromarray(rgb).save(self.folder / f"frame_{tick.index:06d}.png", compress_level=1)
        self.count += 1

    def close(self) -> None:
        pass
