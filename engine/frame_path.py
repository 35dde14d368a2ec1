"""The frame path: the order of a show's stages and the size of the frame each hands on, decided here only.

    generate        [1, 3, R, R]      the model's frame (R: its resolution, 64 for the default show)
    super-res rows  [1, 3, sR, sR]    every `[[filters]]` row that enlarges (scale > 1), in row order
    fit             [1, 3, H, W]      resized to the work size (bicubic; skipped when already that size)
    mirror          [1, 3, H, W]      the camera's picture read at the work size, in place of or over the frame
    filter rows     [1, 3, H, W]      the other rows (DeepDream, style, colour, ...), in row order
    (compositor)                      the GL side: blend, Lanczos to the output size, trail

So DeepDream, style, colour and the mirror see the upscaled frame, whatever the rows' order in the file.
The work size is `[output] work_size`, else the super-resolution's output size, else the generator's.
`plan` is the pure part (a show and its built filters -> the stages); `Pipeline.generate` walks them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.show import ShowError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    kind: str  # "generate", "upscale", "fit", "mirror" or "filter"
    name: str  # its name in the per-stage times (`--stats`): a row's name for rows
    size: tuple[int, int]  # (width, height) of the frame it hands on
    row: int = -1  # upscale and filter stages: the index of their row in `show.filters`


@dataclass(frozen=True)
class FramePath:
    stages: tuple[Stage, ...]

    @property
    def work_size(self) -> tuple[int, int]:
        """(width, height) of the frames the filters see and the compositor receives."""
        return self.stages[-1].size

    def describe(self) -> str:
        """"generate 64x64 -> superres 256x256 -> grade 256x256": the order, for logs and docs."""
        return " -> ".join(f"{s.name} {s.size[0]}x{s.size[1]}" for s in self.stages)


def plan(resolution: int, filters: list, names: list[str], work_size: tuple[int, int] = (0, 0)) -> FramePath:
    """The stages for a generator of `resolution` px and a show's built `filters` (modules, with their rows'
    `names`): rows whose `scale` is above 1 first, then the fit to `work_size` ((0, 0): the size they
    reach), the mirror, and the other rows."""
    side = resolution
    stages = [Stage("generate", "generate", (side, side))]
    for i, (f, name) in enumerate(zip(filters, names)):
        scale = getattr(f, "scale", 1)
        if scale > 1:
            side *= scale
            stages.append(Stage("upscale", name, (side, side), i))
    work = (side, side) if tuple(work_size) == (0, 0) else tuple(work_size)
    if work != (side, side):
        stages.append(Stage("fit", "fit", work))
    stages.append(Stage("mirror", "mirror", work))
    stages += [Stage("filter", name, work, i) for i, (f, name) in enumerate(zip(filters, names))
               if getattr(f, "scale", 1) <= 1]
    return FramePath(tuple(stages))


def fit(image: torch.Tensor, size: tuple[int, int], how: str = "contain", background=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """image [B, 3, h, w] in [0, 1] -> [B, 3, H, W], size = (W, H): scaled with its aspect kept (bicubic,
    antialiased when shrinking) to fit inside ("contain", the rest `background`) or to fill ("cover",
    centre-cropped)."""
    assert image.ndim == 4 and image.shape[1] == 3, f"image must be [B, 3, H, W], got {list(image.shape)}"
    W, H = size
    h, w = image.shape[-2:]
    if (w, h) == (W, H):
        return image
    scale = min(W / w, H / h) if how == "contain" else max(W / w, H / h)
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    scaled = F.interpolate(image, size=(sh, sw), mode="bicubic", align_corners=False, antialias=scale < 1).clamp(0, 1)
    if (sw, sh) == (W, H):
        return scaled
    if how == "cover":
        y, x = (sh - H) // 2, (sw - W) // 2
        return scaled[..., y:y + H, x:x + W].contiguous()
    out = torch.tensor(background, dtype=image.dtype, device=image.device)[None, :, None, None]
    out = out.expand(image.shape[0], 3, H, W).clone()
    y, x = (H - sh) // 2, (W - sw) // 2
    out[..., y:y + sh, x:x + sw] = scaled
    return out


def is_out_of_memory(error: BaseException) -> bool:
    """A device that could not hold a tensor: CUDA's OutOfMemoryError, the CPU allocator's RuntimeError, or
    Python's MemoryError. Nothing else is: a bug must not be taken for a size to shrink."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def smaller(size: tuple[int, int], least: int) -> tuple[int, int] | None:
    """The work size a step down from `size` (each side halved, kept even and the aspect kept), or None when
    that would take a side under `least`."""
    w, h = (max(2, (s // 2) // 2 * 2) for s in size)
    return None if min(w, h) < least else (w, h)


def largest_that_fits(path: FramePath, replan, probe, least: int, where: str, device) -> FramePath:
    """`path`, or the same path at the largest smaller work size whose stages `probe(path)` runs without running
    out of memory, with one warning. `replan(size)` gives the path at another work size. Why at start: a frame
    too big for the device found at the first frame is one warning and a smaller picture, not a show that
    stops; found later it would change the compositor's input under it."""
    asked = path.work_size
    while True:
        try:
            probe(path)
            break
        except Exception as e:  # noqa: BLE001 - only running out of memory is handled; anything else re-raised
            if not is_out_of_memory(e):
                raise
            size = smaller(path.work_size, least)
            if size is None:
                raise ShowError(f"{where}: the frame path {path.describe()} does not fit in the memory of {device} "
                                f"even at its smallest work size") from None
            if device.type == "cuda":
                torch.cuda.empty_cache()
            path = replan(size)
    if path.work_size != asked:
        log.warning(
            "%s: output.work_size %dx%d does not fit in the memory of %s: the filters work at %dx%d instead",
            where, *asked, device, *path.work_size)
    return path
