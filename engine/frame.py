"""The contracts every stage shares.

- `Tick`: which frame and what show time. Stages read `tick.t`, never the wall clock, so a frame is
  a pure function of show time and control state: offline renders are frame-exact and repeatable.
- Images are `[B, 3, H, W]` float tensors in [0, 1] on the generator's device, until the one place
  that converts them for display (`to_uint8_hwc`, on the device).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tick:
    index: int  # frame number since the show started
    t: float  # show time in seconds


@dataclass
class Frame:
    """A generated image and the tick it was made for (the display may blend two of them)."""
    tick: Tick
    image: torch.Tensor  # [1, 3, h, w] in [0, 1]
    rgb: object = None  # uint8 HxWx3: a numpy array (`to_uint8_hwc`), or a CUDA tensor (`quantise`) when frames stay
    #                     on the GPU for the compositor's CUDA-OpenGL upload (engine/frame_texture.py)


def check_image(image: torch.Tensor) -> None:
    assert image.ndim == 4 and image.shape[1] == 3, f"image must be [B, 3, H, W], got {list(image.shape)}"


def quantise(image: torch.Tensor) -> torch.Tensor:
    """[1, 3, H, W] in [0, 1] -> [H, W, 3] uint8, contiguous, on the image's device: quantise and layout in one
    place for the CPU and the GPU alike (the host upload copies it to host, the CUDA-OpenGL one copies it on the
    device)."""
    check_image(image)
    return (image[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


def to_uint8_hwc(image: torch.Tensor):
    """[1, 3, H, W] in [0, 1] -> HxWx3 uint8 numpy; quantised on the device (`quantise`), one small copy to host."""
    return quantise(image).cpu().numpy()
