"""Mirror mode: the camera's image as the frame's source, in place of the generator's or blended with it
(`[camera] mirror`, live param `camera.mirror`), at the show's work size after any super-resolution and before
the other filters (engine/frame_path.py), so the visitor is dreamed or painted at full detail.

A mirror source is a callable `t -> (H, W, 3) RGB uint8 or None` (None: no picture yet). Live, it is the
`Camera` thread's `latest_image()` (engine/controls/camera.py), the same capture that feeds the `camera:*`
features. In an offline render a video file stands in for the camera as a pure function of show time
(`VideoAtTime`: frame floor(t x the video's fps)), so renders stay frame-exact.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from engine.errors import MasqueradeError


def framed(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 -> (H, W, 3) uint8, size = (W, H): the centred crop of that aspect, resized (area
    filter down, bicubic up)."""
    import cv2

    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8, (rgb.shape, rgb.dtype)
    W, H = size
    h, w = rgb.shape[:2]
    cw, ch = (w, max(1, round(w * H / W))) if w * H <= h * W else (max(1, round(h * W / H)), h)
    crop = rgb[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
    if (cw, ch) == (W, H):
        return np.ascontiguousarray(crop)
    return cv2.resize(crop, (W, H), interpolation=cv2.INTER_AREA if cw > W else cv2.INTER_CUBIC)


def square(rgb: np.ndarray, side: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (side, side, 3) uint8: the centred square crop, resized."""
    return framed(rgb, (side, side))


def picture(rgb: np.ndarray, size: tuple[int, int], device, flip: bool = False) -> torch.Tensor:
    """A camera picture (h, w, 3) uint8 -> [1, 3, H, W] float32 in [0, 1] on `device`, size = (W, H): the
    centred crop of that aspect, flipped left-right with `flip` (as a mirror shows a visitor)."""
    rgb = framed(rgb, size)
    rgb = rgb[:, ::-1] if flip else rgb
    return torch.from_numpy(rgb.copy()).to(device).permute(2, 0, 1)[None].float() / 255


def apply(image: torch.Tensor, rgb: np.ndarray | None, amount: float, flip: bool = False) -> torch.Tensor:
    """image [1, 3, H, W] in [0, 1] and a camera picture -> the picture at H x W, mixed in by `amount`
    (1: the picture alone, exactly its pixels). No picture yet: the image as it is."""
    if rgb is None or amount <= 0:
        return image
    cam = picture(rgb, (image.shape[-1], image.shape[-2]), image.device, flip).to(image.dtype)
    return cam if amount >= 1 else torch.lerp(image, cam, float(amount))  # [1, 3, H, W]


class VideoAtTime:
    """A video file as a camera whose picture is a pure function of show time: frame floor(t x fps) (from 0),
    looping at the end (or holding the last frame). Read forward in order, as a render asks; an earlier
    time starts the file again, so any order gives the same pictures."""

    def __init__(self, path, loop: bool = True):
        import cv2

        self.cv2 = cv2
        self.path, self.loop = os.fspath(path), loop
        self._cap = cv2.VideoCapture(self.path)
        if not self._cap.isOpened():
            raise MasqueradeError(f"camera.source {self.path}: cannot open it as a video")
        self.fps = self._cap.get(cv2.CAP_PROP_FPS)
        if not self.fps or not 0 < self.fps <= 1000:
            raise MasqueradeError(f"camera.source {self.path}: the video has no frame rate")
        self.count: int | None = None  # frames in the file, known once the end has been read
        self._next = 0  # index of the frame the next read returns
        self._last: tuple[int, np.ndarray] | None = None  # (index, RGB) of the last frame read

    def index(self, t: float) -> int:
        i = max(0, math.floor(t * self.fps + 1e-6))  # 1e-6: t = k / fps must not round down to k - 1
        if self.count is not None:
            i = i % self.count if self.loop else min(i, self.count - 1)
        return i

    def __call__(self, t: float) -> np.ndarray | None:
        cv2 = self.cv2
        want = self.index(t)
        while self._last is None or self._last[0] != want:
            if self._last is not None and want < self._last[0]:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # back to the start: reading forward is exact
                self._next, self._last = 0, None
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                if self._next == 0:
                    raise MasqueradeError(f"camera.source {self.path}: no frame could be read")
                self.count = self._next
                want = self.index(t)
                if self._last is not None and self._last[0] == want:
                    break
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                self._next, self._last = 0, None
                continue
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            self._last = (self._next, bgr)
            self._next += 1
        return cv2.cvtColor(self._last[1], cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._cap.release()


def live(camera):
    """The running `Camera`'s newest picture, whatever the show time (live runs)."""
    return lambda t: camera.latest_image()


def for_render(show) -> VideoAtTime | None:
    """The mirror source of an offline render: the show's camera video file read at show time; None when the
    show has no camera file. A live camera cannot be rendered frame-exact: a show that mirrors one is refused."""
    from engine.show import ShowError

    cam = show.camera
    if not cam.enabled:
        return None
    device = cam.device(show)
    if isinstance(device, str) and "://" not in device and os.path.isfile(device):
        try:
            return VideoAtTime(device, loop=cam.loop)
        except MasqueradeError as e:
            raise ShowError(f"{show.source or '<show>'}: {e}") from None
    if cam.mirror > 0:
        raise ShowError(f"{show.source or '<show>'}: camera.mirror in a render needs camera.source to be a video "
                        f"file (a live camera cannot be rendered frame-exact), got {cam.source!r}")
    return None
