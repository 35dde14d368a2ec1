"""Camera input (OpenCV): motion, optical flow, presence, faces and colour as `camera:*` bus sources.

The source is a device index (`0`), a video file (a stand-in for a camera, paced at its own frame rate,
optionally looping for a kiosk) or a stream URL (`rtsp://...`); all go through one code path. Each
processed frame posts, all in 0..1 unless noted:

- `camera:motion`: frame differencing on a downscaled grey image: mean absolute change above a noise
  floor, mapped by `1 - exp(-gain * energy)`.
- `camera:flow_x`, `camera:flow_y` (-1..1): mean Farneback optical flow of the moving pixels (Farneback,
  "Two-Frame Motion Estimation Based on Polynomial Expansion", SCIA 2003), as a fraction of the image
  width per frame, through tanh. Positive x is rightwards, positive y downwards (image coordinates).
- `camera:presence` (0 or 1): someone is there: on when motion passes `on` or a face is seen, off only after
  motion has stayed under `off` with no face for `hold` seconds (hysteresis and a hold time).
- `camera:faces` (a count) and `camera:face_x`, `camera:face_y` (the largest face's centre; only posted
  while a face is seen): OpenCV's bundled Haar cascade (Viola and Jones, CVPR 2001), every few frames.
- `camera:hue`, `camera:saturation`, `camera:value`: the dominant colour (the strongest hue bin,
  weighted by saturation and value; hue 0..1 around the colour wheel).

`CameraAnalysis` is the per-frame arithmetic, a plain object fed frames and their times (tested without a
thread); `Camera` is the `Source` thread. `Camera.latest_image()` returns the last frame, downscaled, as
an HxWx3 RGB uint8 array (or None) for a "mirror" filter.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

from engine.controls.source import DeviceLost, Source

FEATURES = ("motion", "flow_x", "flow_y", "presence", "faces", "face_x", "face_y", "hue", "saturation", "value")


@dataclass(frozen=True)
class Presence:
    """Hysteresis for `camera:presence`: on at `on` motion (or a face), off under `off` for `hold` seconds."""
    on: float = 0.15
    off: float = 0.05
    hold: float = 3.0


class CameraAnalysis:
    """Frames (HxWx3 BGR uint8, as OpenCV reads them) and their times in seconds -> feature dicts."""

    def __init__(self, width: int = 80, motion_gain: float = 40.0, noise: int = 12, presence: Presence = Presence(),
                 faces: bool = True, face_every: int = 3, face_width: int = 320):
        self.width, self.motion_gain, self.noise, self.presence = width, motion_gain, noise, presence
        self.face_every, self.face_width = max(1, face_every), face_width
        self.cascade = None
        if faces:
            path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
            cascade = cv2.CascadeClassifier(path)
            self.cascade = None if cascade.empty() else cascade
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (after a reconnect the first frame has no motion)."""
        self._prev: np.ndarray | None = None
        self._present, self._quiet_since = False, None
        self._frame = 0
        self._faces: list[tuple[float, float, float]] = []  # (area, cx, cy), largest first

    def small_grey(self, bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        size = (self.width, max(1, round(h * self.width / w)))
        return cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)

    def __call__(self, bgr: np.ndarray, t: float) -> dict[str, float]:
        assert bgr.ndim == 3 and bgr.shape[2] == 3 and bgr.dtype == np.uint8, (bgr.shape, bgr.dtype)  # (H, W, 3)
        grey = self.small_grey(bgr)  # (h, width) uint8
        out: dict[str, float] = {}
        motion = flow_x = flow_y = 0.0
        if self._prev is not None and self._prev.shape == grey.shape:
            motion = self.motion(self._prev, grey)
            flow_x, flow_y = self.flow(self._prev, grey)
        self._prev = grey
        if self.cascade is not None and self._frame % self.face_every == 0:
            self._faces = self.faces(bgr)
        self._frame += 1
        out["motion"], out["flow_x"], out["flow_y"] = motion, flow_x, flow_y
        out["faces"] = float(len(self._faces))
        if self._faces:
            _, out["face_x"], out["face_y"] = self._faces[0]
        out["presence"] = self._presence(motion, bool(self._faces), t)
        out["hue"], out["saturation"], out["value"] = dominant_colour(bgr)
        return out

    def motion(self, prev: np.ndarray, grey: np.ndarray) -> float:
        diff = cv2.absdiff(prev, grey)
        diff[diff < self.noise] = 0  # sensor noise and compression shimmer are not motion
        energy = float(diff.mean()) / 255.0
        return 1.0 - math.exp(-self.motion_gain * energy)

    def flow(self, prev: np.ndarray, grey: np.ndarray) -> tuple[float, float]:
        f = cv2.calcOpticalFlowFarneback(prev, grey, None, 0.5, 3, 9, 3, 5, 1.1, 0)  # (h, w, 2) pixels per frame
        moving = np.hypot(f[..., 0], f[..., 1]) > 0.25
        if not moving.any():
            return 0.0, 0.0
        scale = 0.02 * grey.shape[1]  # 2% of the width per frame reads as ~0.76
        return (math.tanh(float(f[..., 0][moving].mean()) / scale),
                math.tanh(float(f[..., 1][moving].mean()) / scale))

    def faces(self, bgr: np.ndarray) -> list[tuple[float, float, float]]:
        h, w = bgr.shape[:2]
        s = min(1.0, self.face_width / w)
        grey = cv2.cvtColor(cv2.resize(bgr, (max(1, round(w * s)), max(1, round(h * s)))) if s < 1 else bgr,
                            cv2.COLOR_BGR2GRAY)
        grey = cv2.equalizeHist(grey)
        found = self.cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        gh, gw = grey.shape
        faces = [(float(fw * fh), (x + fw / 2) / gw, (y + fh / 2) / gh) for x, y, fw, fh in found]
        return sorted(faces, reverse=True)

    def _presence(self, motion: float, face: bool, t: float) -> float:
        p = self.presence
        if face or motion >= p.on:
            self._present, self._quiet_since = True, None
        elif self._present:
            if motion >= p.off:
                self._quiet_since = None
            elif self._quiet_since is None:
                self._quiet_since = t
            elif t - self._quiet_since >= p.hold:
                self._present, self._quiet_since = False, None
        return 1.0 if self._present else 0.0


def dominant_colour(bgr: np.ndarray, bins: int = 18) -> tuple[float, float, float]:
    """(hue 0..1, saturation 0..1, value 0..1) of the strongest hue bin, weighted by saturation x value."""
    hsv = cv2.cvtColor(cv2.resize(bgr, (32, 24), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2HSV).reshape(-1, 3)
    h, s, v = (hsv[:, i].astype(np.float64) for i in range(3))  # OpenCV: h 0..179, s and v 0..255
    weight = (s / 255.0) * (v / 255.0)
    if weight.sum() < 1e-6:  # grey, black or white: no hue to speak of
        return 0.0, 0.0, float(v.mean() / 255.0)
    which = np.minimum((h * bins / 180).astype(int), bins - 1)
    strength = np.bincount(which, weights=weight, minlength=bins)
    best = int(strength.argmax())
    sel = which == best
    w = weight[sel]
    hue = float((h[sel] * w).sum() / w.sum()) / 180.0
    return hue, float(s[sel].mean() / 255.0), float(v[sel].mean() / 255.0)


class FileFeed:
    """A video file as the camera of a render: a pure function of show time, as audio and MIDI files are.
    Called once per frame with non-decreasing `t`, it analyses every file frame up to floor(t x the file's
    fps) in order (each at its own time in the file, as a camera at the file's rate would deliver them)
    and posts the newest frame's features at `t`. At the end the file starts again (`loop`), or its
    sources are released, as a live file's would be once lost."""

    def __init__(self, path, loop: bool = True, analysis: CameraAnalysis | None = None):
        self.path, self.loop = os.fspath(path), loop
        self.analysis = analysis or CameraAnalysis()
        self._cap = cv2.VideoCapture(self.path)
        fps = self._cap.get(cv2.CAP_PROP_FPS) if self._cap.isOpened() else 0.0
        if not fps or not 0 < fps <= 1000:
            self._cap.release()
            raise DeviceLost(f"camera.source {self.path}: cannot read it as a video with a frame rate")
        self.fps = fps
        self._seen = -1  # file frames analysed so far, counted across loops
        self._features: dict[str, float] = {}
        self._ended = False

    def _read(self):
        ok, frame = self._cap.read()
        if (not ok or frame is None) and self.loop and self._seen >= 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame

    def __call__(self, bus, t: float) -> None:
        if self._ended:
            return
        want = max(0, math.floor(t * self.fps + 1e-6))  # 1e-6: t = k / fps must not round down to k - 1
        while self._seen < want:
            frame = self._read()
            if frame is None:
                self._ended = True
                self._cap.release()
                for name in self._features:
                    bus.release(f"camera:{name}", at=t)
                return
            self._seen += 1
            self._features = self.analysis(frame, self._seen / self.fps)
        for name, value in self._features.items():
            bus.post(f"camera:{name}", value, at=t)


def _is_file(source) -> bool:
    return isinstance(source, (str, os.PathLike)) and "://" not in str(source) and os.path.exists(source)


class Camera(Source):
    """A camera, video file or stream posting `camera:*` features. Never raises after `start()`.

    `source`: a device index, a file path or a URL. `loop`: a file starts again at its end (or, when a new
    recording has been put at the path meanwhile, that one starts) instead of being lost (without it, a file
    that ended stays lost: a reconnect does not play it again, but a new file put at the path does). `pace`: a
    file plays at its own frame rate (as a camera would deliver it); False reads it as fast as it decodes
    (tests). `mirror_width`: the width `latest_image()` is kept at (0: not kept).
    """

    kind = "camera"

    def __init__(self, bus, source=0, *, loop: bool = False, pace: bool = True, analysis: CameraAnalysis | None = None,
                 mirror_width: int = 320, **source_options):
        super().__init__(bus, **source_options)
        self.source, self.loop, self.pace, self.mirror_width = source, loop, pace, mirror_width
        self.is_file = _is_file(source)
        self.analysis = analysis or CameraAnalysis()
        self.features: dict[str, float] = {}  # the last posted values, for a status page
        self._cap = None
        self._image: np.ndarray | None = None
        self._next_frame = 0.0
        self._period = 0.0
        self._played = None  # without `loop`: the (inode, mtime) of the file that played to its end
        self._playing = None  # the (inode, mtime) of the file open now

    def latest_image(self) -> np.ndarray | None:
        """The last frame read, downscaled to `mirror_width`, as (H, W, 3) RGB uint8; None before the first."""
        return self._image

    def _open(self) -> None:
        src = self.source
        if self.is_file:
            if not os.path.exists(src):
                raise DeviceLost(f"{src}: no such file")
            st = os.stat(src)
            self._playing = (st.st_ino, st.st_mtime_ns)
            if self._played == self._playing and not self.loop:  # a new file at the path plays
                raise DeviceLost("end of file (loop = false: it is not played again)")
            src = os.fspath(src)
        cap = cv2.VideoCapture(src)
        if not cap.isOpened():
            cap.release()
            raise DeviceLost(f"cannot open camera {self.source!r}")
        self._cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS) if self.is_file and self.pace else 0.0
        self._period = 1.0 / fps if fps and 1 <= fps <= 240 else 0.0
        self._next_frame = self.clock()
        self.analysis.reset()

    def _step(self) -> bool:
        if self._period:  # a file plays at its own rate; a live camera's read waits for the sensor
            if self._wait(self._next_frame - self.clock()):
                return True
            self._next_frame = max(self._next_frame + self._period, self.clock() - self._period)
        ok, frame = self._cap.read()
        if not ok or frame is None:
            if self.is_file and self.loop and self._stats.reads:
                if self._replaced():  # a new recording at the path: the loop goes on with it, from its start
                    self._close()
                    self._open()
                else:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self._cap.read()
            if not ok or frame is None:
                self.reason = "end of file" if self.is_file else "read failed (unplugged?)"
                if self.is_file and self._stats.reads > 0:
                    self._played = self._playing
                return False
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        self._count_read()
        features = self.analysis(frame, self.clock())
        for name, value in features.items():
            self.post(name, value)
        self.features = features
        if self.mirror_width:
            h, w = frame.shape[:2]
            s = min(1.0, self.mirror_width / w)
            small = cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            self._image = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)  # one reference assignment: safe to read
        return True

    def _replaced(self) -> bool:
        """Whether the file at the path is another one than the one playing (a new recording put in its place)."""
        try:
            st = os.stat(self.source)
        except OSError:
            return False  # gone: the open copy loops on; a reopen would lose the camera for nothing
        return (st.st_ino, st.st_mtime_ns) != self._playing

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
