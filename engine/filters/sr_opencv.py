"""Super-resolution through OpenCV's `dnn_superres` module: its published TensorFlow `.pb` models, ESPCN
(Shi et al. 2016, arXiv:1609.05158), FSRCNN (Dong et al. 2016, arXiv:1608.00367), LapSRN (Lai et al.
2017, arXiv:1704.03915) and EDSR (Lim et al. 2017, arXiv:1707.02921).

Optional: `cv2.dnn_superres` exists only in opencv-contrib, which Masquerade does not depend on (the
contrib wheel and the plain `opencv-python(-headless)` the project uses install the same `cv2` package
and conflict). Without it the filter says what to install. OpenCV runs the model on the CPU, on uint8
pictures, one at a time; the frame goes to host memory and back.

Shapes: image [B, 3, H, W] float in [0, 1] -> [B, 3, s*H, s*W], s read from the file name (`ESPCN_x4.pb`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.errors import MasqueradeError

ALGORITHMS = {"espcn": "espcn", "fsrcnn": "fsrcnn", "fsrcnn-small": "fsrcnn", "lapsrn": "lapsrn", "edsr": "edsr"}
INSTALL = ("the OpenCV super-resolution models need cv2.dnn_superres, which only opencv-contrib has: "
           "pip install opencv-contrib-python-headless (it replaces opencv-python-headless; Masquerade does not "
           "install it because the two conflict)")


class OpenCVSuperResError(MasqueradeError, ValueError):
    """dnn_superres missing, or a model file it cannot use; the message says which and what to do."""


def dnn_superres():
    """OpenCV's `dnn_superres` module, or an error saying how to get it."""
    import cv2

    module = getattr(cv2, "dnn_superres", None)
    if module is None:
        raise OpenCVSuperResError(f"{INSTALL} (this cv2 is {cv2.__version__} without contrib)")
    return module


def model_from_name(path: str | Path) -> tuple[str, int]:
    """(algorithm, scale) from OpenCV's file names: `ESPCN_x4.pb`, `FSRCNN-small_x3.pb`, `LapSRN_x8.pb`."""
    match = re.fullmatch(r"(espcn|fsrcnn-small|fsrcnn|lapsrn|edsr)_x(\d+)\.pb", Path(path).name.lower())
    if match is None:
        raise OpenCVSuperResError(f"{path}: cannot tell the model from the name; expected OpenCV's names, "
                                  "e.g. ESPCN_x4.pb, FSRCNN_x2.pb, LapSRN_x8.pb (or pass algorithm and scale)")
    return ALGORITHMS[match[1]], int(match[2])


class OpenCVSuperRes(nn.Module):
    scale = 4  # the instance's own, from the file, replaces this
    stateful = False  # frame by frame, whatever the batch
    controls: dict[str, tuple[float, float, float]] = {}

    def __init__(self, path: str | Path, algorithm: str | None = None, scale: int | None = None):
        super().__init__()
        module = dnn_superres()
        path = Path(path)
        if not path.is_file():
            raise OpenCVSuperResError(f"{path}: no such model file")
        if algorithm is None or scale is None:
            named_algorithm, named_scale = model_from_name(path)
            algorithm, scale = algorithm or named_algorithm, scale or named_scale
        if algorithm not in ALGORITHMS.values():
            raise OpenCVSuperResError(f"algorithm must be one of {', '.join(sorted(set(ALGORITHMS.values())))}, "
                                      f"got {algorithm!r}")
        self.impl = module.DnnSuperResImpl_create()
        try:
            self.impl.readModel(str(path))
        except Exception as e:  # cv2.error: the message is OpenCV's
            raise OpenCVSuperResError(f"{path}: OpenCV cannot read it as a model ({e})") from None
        self.impl.setModel(algorithm, int(scale))
        self.scale = int(scale)
        self.config = dict(path=str(path), algorithm=algorithm, scale=self.scale)

    @torch.inference_mode()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        assert image.ndim == 4 and image.shape[1] == 3, f"image must be [B, 3, H, W], got {list(image.shape)}"
        frames = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).flip(-1).cpu().numpy()
        out = [self.impl.upsample(np.ascontiguousarray(f)) for f in frames]  # BGR uint8 [sH, sW, 3] each
        result = torch.from_numpy(np.stack(out)).flip(-1).permute(0, 3, 1, 2).float() / 255
        return result.to(image.device)
