"""A virtual camera through pyvirtualcam: OBS, Zoom, Resolume and browsers see Masquerade as a webcam.

Linux: a v4l2loopback device (`sudo apt install v4l2loopback-dkms`, then `sudo modprobe v4l2loopback
devices=1 exclusive_caps=1 card_label=Masquerade`); `device` picks one (`/dev/video10`), else the first.
Windows and macOS: OBS Studio's virtual camera (install OBS and start its virtual camera once).
"""

from __future__ import annotations

import numpy as np

from engine.sinks import Unavailable

HOW = ("on Linux: sudo apt install v4l2loopback-dkms && sudo modprobe v4l2loopback devices=1 exclusive_caps=1; "
       "on Windows and macOS: install OBS Studio and start its virtual camera once")


class Camera:
    def __init__(self, size: tuple[int, int], fps: float, device: str = "", backend: str = ""):
        try:
            import pyvirtualcam
        except ImportError:
            raise Unavailable("virtualcam: needs pyvirtualcam (pip install 'masquerade[vj]')") from None
        try:
            self.camera = pyvirtualcam.Camera(size[0], size[1], fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                              device=device or None, backend=backend or None)
        except RuntimeError as e:
            raise Unavailable(f"virtualcam: no virtual camera ({e}); {HOW}") from None
        self.count = 0

    def write(self, rgb: np.ndarray, tick) -> None:
        self.camera.send(np.ascontiguousarray(rgb))  # never paced here: the show's clock paces the frames
        self.count += 1

    def close(self) -> None:
        self.camera.close()
