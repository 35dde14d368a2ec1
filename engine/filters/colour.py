"""Colour filters: transfer a reference picture's palette, and grade.

Colour transfer is Reinhard, Ashikhmin, Gooch and Shirley, "Color Transfer between Images" (IEEE CG&A
2001): in a colour space whose axes are nearly decorrelated, shift and scale each channel of the frame
so its mean and standard deviation become the reference's. The paper uses Ruderman's l-alpha-beta; this
uses CIELAB (D65), which decorrelates about as well and has no logarithm to blow up on the black
pixels GAN frames are full of. The reference is any picture file (read with Pillow); only its six
statistics are kept.

Grading works on the display values: exposure (stops), white balance (`temperature`), lift / gamma /
gain, contrast about mid-grey and saturation about Rec. 709 luma. Every setting has an identity value
that leaves the frame as it is.

Pure functions first (`rgb_to_lab`, `lab_to_rgb`, `lab_statistics`, `match_statistics`, `transfer`,
`grade`), thin modules second (`ColourTransfer`, `Grade`). Images are [B, 3, H, W] float in [0, 1] on
any device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

SUNSET = Path(__file__).resolve().parents[2] / "assets" / "media" / "palette-sunset.png"

# linear sRGB -> CIE XYZ, D65 white (IEC 61966-2-1)
_RGB_TO_XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                            [0.2126729, 0.7151522, 0.0721750],
                            [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64)
_XYZ_TO_RGB = torch.linalg.inv(_RGB_TO_XYZ)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)  # D65 XYZ, Y = 1
_DELTA = 6 / 29
_LUMA = (0.2126, 0.7152, 0.0722)  # Rec. 709


def _check(image: torch.Tensor) -> None:
    assert image.ndim == 4 and image.shape[1] == 3, f"image must be [B, 3, H, W], got {list(image.shape)}"


def _mix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """3x3 `matrix` applied to the channels of x [B, 3, H, W]."""
    return torch.einsum("ij,bjhw->bihw", matrix.to(x.device, x.dtype), x)


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp_min(0) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)


def rgb_to_lab(image: torch.Tensor) -> torch.Tensor:
    """sRGB [B, 3, H, W] in [0, 1] -> CIELAB [B, 3, H, W]: L in 0..100, a and b about -100..100."""
    _check(image)
    xyz = _mix(_RGB_TO_XYZ, srgb_to_linear(image)) / _WHITE.to(image.device, image.dtype)[:, None, None]
    f = torch.where(xyz > _DELTA ** 3, xyz.clamp_min(_DELTA ** 3) ** (1 / 3), xyz / (3 * _DELTA ** 2) + 4 / 29)
    fx, fy, fz = f.unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], 1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB [B, 3, H, W] -> sRGB [B, 3, H, W], not clamped (colours outside sRGB leave 0..1)."""
    _check(lab)
    L, a, b = lab.unbind(1)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], 1)
    xyz = torch.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - 4 / 29))
    xyz = xyz * _WHITE.to(lab.device, lab.dtype)[:, None, None]
    return linear_to_srgb(_mix(_XYZ_TO_RGB, xyz))


def lab_statistics(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image channel mean and standard deviation in CIELAB: two [B, 3] tensors."""
    lab = rgb_to_lab(image).flatten(2)  # [B, 3, H*W]
    return lab.mean(2), lab.std(2, correction=0)


def match_statistics(lab: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, amount: float = 1.0,
                     luminance: float = 1.0) -> torch.Tensor:
    """The statistics step alone, in CIELAB: lab [B, 3, H, W] -> same, each image's channel means and
    standard deviations moved `amount` of the way to `mean` and `std` ([3] or [B, 3]); `luminance`
    scales the step on L (0 keeps the lightness, moving only the colours). A flat channel has no
    spread to scale and takes the target mean."""
    m, s = lab.flatten(2).mean(2), lab.flatten(2).std(2, correction=0)  # [B, 3]
    weight = torch.tensor([amount * luminance, amount, amount], device=lab.device, dtype=lab.dtype)
    target_m = m + weight * (mean.to(m) - m)
    target_s = s + weight * (std.to(s) - s)
    return (lab - m[..., None, None]) * (target_s / s.clamp_min(1e-4))[..., None, None] + target_m[..., None, None]


def transfer(image: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, amount: float = 1.0,
             luminance: float = 1.0) -> torch.Tensor:
    """Reinhard colour transfer: image [B, 3, H, W] in [0, 1] -> same, with its CIELAB statistics
    moved toward the reference's (`match_statistics`). The result is clamped to [0, 1]: where the
    reference's spread pushes colours out of sRGB they clip, and the statistics then match less
    exactly. `amount` 0 returns the frame untouched."""
    _check(image)
    if amount == 0:
        return image
    return lab_to_rgb(match_statistics(rgb_to_lab(image), mean, std, amount, luminance)).clamp(0, 1)


def grade(image: torch.Tensor, exposure: float = 0.0, temperature: float = 0.0, lift: float = 0.0,
          gamma: float = 1.0, gain: float = 1.0, contrast: float = 1.0, saturation: float = 1.0) -> torch.Tensor:
    """image [B, 3, H, W] in [0, 1] -> same, graded in this order:
    exposure (stops: x 2^exposure), temperature (-1 cool .. 1 warm: red and blue gains 1 +- 0.3 t),
    lift / gain (x -> gain * (x + lift * (1 - x)): lift raises the blacks, gain scales the whites),
    gamma (x -> x^(1/gamma): > 1 brightens the mid-tones), contrast (about mid-grey 0.5), saturation
    (about Rec. 709 luma: 0 is grey, 1 unchanged, > 1 more vivid); then clamped to [0, 1].
    The defaults change nothing."""
    _check(image)
    x = image * 2.0 ** exposure
    if temperature:
        x = x * torch.tensor([1 + 0.3 * temperature, 1.0, 1 - 0.3 * temperature],
                             device=x.device, dtype=x.dtype)[:, None, None]
    x = gain * (x + lift * (1 - x))
    if gamma != 1:
        x = x.clamp_min(0) ** (1 / gamma)
    x = (x - 0.5) * contrast + 0.5
    if saturation != 1:
        r, g, b = x.unbind(1)
        luma = (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b)[:, None]  # [B, 1, H, W]
        x = luma + saturation * (x - luma)
    return x.clamp(0, 1)


def read_picture(path: str | Path, max_side: int = 512) -> torch.Tensor:
    """A picture file -> [1, 3, H, W] float in [0, 1] (shrunk to `max_side`: statistics need no more)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such reference picture")
    im = Image.open(path).convert("RGB")
    im.thumbnail((max_side, max_side), Image.LANCZOS)
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)[None]


class ColourTransfer(nn.Module):
    """The reference's palette on every frame (Reinhard 2001, in CIELAB). `path`: a picture file
    (default: the shipped `assets/media/palette-sunset.png`)."""

    scale = 1
    stateful = False  # each frame's own statistics: a batch is its frames one by one
    controls = {"amount": (1.0, 0.0, 1.0), "luminance": (1.0, 0.0, 1.0)}

    def __init__(self, path: str | Path = SUNSET, amount: float = 1.0, luminance: float = 1.0):
        super().__init__()
        mean, std = lab_statistics(read_picture(path))
        self.register_buffer("mean", mean[0])  # [3]: L, a, b
        self.register_buffer("std", std[0])
        self.amount, self.luminance = float(amount), float(luminance)
        self.config = dict(path=str(path), amount=self.amount, luminance=self.luminance)

    def forward(self, image: torch.Tensor, amount: float | None = None, luminance: float | None = None) -> torch.Tensor:
        return transfer(image, self.mean, self.std, self.amount if amount is None else amount,
                        self.luminance if luminance is None else luminance)


class Grade(nn.Module):
    """Colour grading with live controls; see `grade` for what each does."""

    scale = 1
    stateful = False
    controls = {"exposure": (0.0, -3.0, 3.0), "temperature": (0.0, -1.0, 1.0), "lift": (0.0, -0.5, 0.5),
                "gamma": (1.0, 0.25, 4.0), "gain": (1.0, 0.0, 3.0), "contrast": (1.0, 0.0, 3.0),
                "saturation": (1.0, 0.0, 3.0)}

    def __init__(self, exposure: float = 0.0, temperature: float = 0.0, lift: float = 0.0, gamma: float = 1.0,
                 gain: float = 1.0, contrast: float = 1.0, saturation: float = 1.0):
        super().__init__()
        self.config = dict(exposure=exposure, temperature=temperature, lift=lift, gamma=gamma, gain=gain,
                           contrast=contrast, saturation=saturation)
        for name, value in self.config.items():
            low, high = self.controls[name][1:]
            if not low <= value <= high:
                raise ValueError(f"grade: {name} = {value} is outside {low}..{high}")

    def forward(self, image: torch.Tensor, exposure: float | None = None, temperature: float | None = None,
                lift: float | None = None, gamma: float | None = None, gain: float | None = None,
                contrast: float | None = None, saturation: float | None = None) -> torch.Tensor:
        given = dict(exposure=exposure, temperature=temperature, lift=lift, gamma=gamma, gain=gain,
                     contrast=contrast, saturation=saturation)
        return grade(image, **{k: self.config[k] if v is None else float(v) for k, v in given.items()})
