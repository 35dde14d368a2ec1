"""Show time -> image: walk, generator (and, in later stages, filters), on the chosen device.

This is the pure part of a frame: `generate(tick)` depends only on the tick and the show, so the
live loop, offline renders and tests all call it and get the same pixels.
"""

from __future__ import annotations

import torch

from engine import walks
from engine.errors import MasqueradeError
from engine.frame import Frame, Tick, check_image, to_uint8_hwc
from engine.generators import checkpoint
from engine.show import Show
from engine.stats import StageTimes


class DeviceError(MasqueradeError):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA device is available to PyTorch here")
    if name not in ("cpu", "cuda"):
        raise DeviceError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


class Pipeline:
    def __init__(self, show: Show, device: str = "auto"):
        self.show = show
        self.device = resolve_device(device)
        self.generator, self.card = checkpoint.load(show.model_path, self.device)
        w = show.walk
        self.walk = walks.create(w.kind, z_dim=self.generator.z_dim, seed=w.seed, keyframes=w.keyframes,
                                 seconds_per_keyframe=w.seconds_per_keyframe, speed=w.speed, easing=w.easing)
        self.times = StageTimes()

    @property
    def resolution(self) -> int:
        return self.generator.resolution

    @torch.inference_mode()
    def generate(self, tick: Tick) -> Frame:
        with self.times.time("walk"):
            z = self.walk.step(tick).to(self.device)  # [1, z_dim]
        with self.times.time("generate"):
            image = self.generator(z, truncation_psi=self.show.walk.truncation)  # [1, 3, R, R] in [0, 1]
            check_image(image)
            rgb = to_uint8_hwc(image)  # RxRx3 uint8, quantised on the device
        return Frame(tick, image, rgb)
