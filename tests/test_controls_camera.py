"""Camera input on tiny generated videos: motion, flow direction, presence hysteresis, faces plumbing, colour,
a file that ends (lost, easing to rest, back-off) and a device that does not exist."""

import threading
import time

import av
import cv2
import numpy as np
import pytest

from engine.controls.bus import Binding, Bus, Param, declare_all
from engine.controls.camera import Camera, CameraAnalysis, Presence, dominant_colour
from tests.conftest import until

W, H, FPS = 160, 120, 20




def square_frames(n, step, still_after=None, colour=(255, 255, 255)):
    """RGB frames of a 24 px square on black moving `step` px a frame to the right (still after `still_after`)."""
    frames = []
    for i in range(n):
        img = np.zeros((H, W, 3), np.uint8)
        x = 20 + step * min(i, still_after if still_after is not None else i)
        img[48:72, x:x + 24] = colour
        frames.append(img)
    return frames


def write_video(path, frames, fps=FPS):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.bit_rate = 2_000_000
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


class Recorder:
    """A bus stand-in that keeps every post and release with its time (to check an ease, not a mapping)."""

    def __init__(self):
        self.events, self.lock = [], threading.Lock()

    def post(self, source, value, at=None):
        with self.lock:
            self.events.append((time.monotonic(), source, value))

    def release(self, source, at=None):
        with self.lock:
            self.events.append((time.monotonic(), source, None))

    def values(self, source):
        with self.lock:
            return [(t, v) for t, s, v in self.events if s == source]


def analyse(frames, analysis=None, fps=FPS):
    analysis = analysis or CameraAnalysis(faces=False)
    return [analysis(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), i / fps) for i, f in enumerate(frames)]


def test_motion_is_high_when_the_square_moves_and_low_when_it_is_still():
    out = analyse(square_frames(20, 4, still_after=10))
    moving = [o["motion"] for o in out[1:10]]
    still = [o["motion"] for o in out[12:]]
    assert min(moving) > 0.25, moving
    assert max(still) < 0.02, still
    assert all(0.0 <= o["motion"] <= 1.0 for o in out)


@pytest.mark.parametrize("step", [4, -4])
def test_flow_x_follows_the_direction_of_the_square(step):
    frames = square_frames(12, abs(step))
    if step < 0:
        frames = [np.ascontiguousarray(f[:, ::-1]) for f in frames]  # mirrored: start on the right, move left
    out = analyse(frames)
    flow_x = np.array([o["flow_x"] for o in out[1:]])
    flow_y = np.array([o["flow_y"] for o in out[1:]])
    assert np.all(np.sign(flow_x) == np.sign(step)) and abs(flow_x.mean()) > 0.3, flow_x
    assert np.abs(flow_y).max() < 0.5 * np.abs(flow_x).min() + 0.05, flow_y
    assert np.all(np.abs(flow_x) <= 1.0)


def test_presence_turns_on_with_motion_and_off_only_after_the_hold():
    analysis = CameraAnalysis(faces=False, presence=Presence(on=0.15, off=0.05, hold=1.0))
    frames = square_frames(60, 4, still_after=10)  # 20 fps: moves for 0.5 s, then still for 2.5 s
    presence = [o["presence"] for o in analyse(frames, analysis)]
    assert presence[0] == 0.0 and presence[1] == 1.0
    # the last motion is at frame 10 (t = 0.5 s): still present until 1.0 s of quiet has passed
    off = presence.index(0.0, 1)
    assert all(p == 1.0 for p in presence[1:off]) and all(p == 0.0 for p in presence[off:])
    assert (off / FPS) - (11 / FPS) == pytest.approx(1.0, abs=1.5 / FPS)


def test_faces_plumbing_on_an_image_without_a_face():
    analysis = CameraAnalysis(faces=True, face_every=1)
    assert analysis.cascade is not None, "OpenCV's bundled Haar cascade did not load"
    out = analysis(np.full((H, W, 3), 90, np.uint8), 0.0)
    assert out["faces"] == 0.0 and "face_x" not in out and out["presence"] == 0.0


def test_dominant_colour_reads_hue_saturation_and_value():
    img = np.zeros((H, W, 3), np.uint8)
    img[:, :100] = (0, 0, 255)  # BGR red, most of the picture
    img[:, 100:] = (255, 0, 0)  # blue
    hue, sat, val = dominant_colour(img)
    assert min(hue, 1 - hue) < 0.03 and sat > 0.95 and val > 0.95
    img[:, :] = (0, 200, 0)  # green: hue 1/3
    assert dominant_colour(img)[0] == pytest.approx(1 / 3, abs=0.03)
    assert dominant_colour(np.full((H, W, 3), 128, np.uint8)) == pytest.approx((0.0, 0.0, 128 / 255), abs=0.01)


def test_a_video_file_posts_to_a_real_bus_and_keeps_a_mirror_image(tmp_path):
    video = write_video(tmp_path / "moving.mp4", square_frames(30, 4))
    bus = declare_all(Bus(), [Param("walk.energy"), Param("walk.direction", 0.0, -1.0, 1.0)],
                      [Binding("camera:motion", "walk.energy"),
                       Binding("camera:flow_x", "walk.direction", input=(-1.0, 1.0), output=(-1.0, 1.0))])
    with Camera(bus, video, pace=False, loop=True) as cam:
        until(lambda: cam.stats.reads >= 10, what="ten frames")
        assert cam.state == "connected"
        snap = until(lambda: (s := bus.snapshot(0.0)).held_by["walk.energy"] and s, what="camera:motion")
        image = cam.latest_image()
    assert snap["walk.energy"] > 0.2 and snap["walk.direction"] > 0.2, dict(snap.values)
    assert image is not None and image.shape == (H, W, 3) and image.dtype == np.uint8
    assert image[60, :, 0].max() > 200  # the white square is in the mirror image
    assert cam.stats.errors == 0 and cam.stats.losses == 0 and cam.state == "stopped"


def test_a_looping_file_plays_past_its_end(tmp_path):
    video = write_video(tmp_path / "short.mp4", square_frames(8, 4))
    with Camera(Recorder(), video, pace=False, loop=True) as cam:
        until(lambda: cam.stats.reads > 30, what="several loops")
        assert cam.stats.losses == 0 and cam.stats.connects == 1


def test_a_looping_file_replaced_by_a_new_recording_goes_on_with_it(tmp_path):
    """An installation swaps the loop video (or a test puts a visitor in front of the stand-in camera): at the
    end of the current pass the new file plays, without a loss."""
    video = write_video(tmp_path / "room.mp4", square_frames(8, 0))  # a square that never moves: nobody
    bus = Recorder()
    with Camera(bus, video, pace=False, loop=True) as cam:
        until(lambda: cam.stats.reads > 20, what="a few passes of the still room")
        assert max(v for _, v in bus.values("camera:motion") if v is not None) < 0.05
        write_video(tmp_path / "visitor.mp4", square_frames(8, 6)).replace(video)
        until(lambda: any(v is not None and v > 0.3 for _, v in bus.values("camera:motion")), what="motion")
        assert cam.stats.losses == 0 and cam.stats.connects == 1 and cam.stats.errors == 0


def test_a_file_that_ends_is_lost_eases_to_rest_and_reopens_with_back_off(tmp_path):
    video = write_video(tmp_path / "ends.mp4", square_frames(12, 4))
    bus = Recorder()
    cam = Camera(bus, video, pace=False, loop=False, decay=0.5, backoff=(0.1, 0.4))
    with cam:
        until(lambda: cam.state == "lost", what="the end of the file")
        lost_at = time.monotonic()
        video.unlink()  # the camera is unplugged: reopening fails from now on
        until(lambda: len(cam.attempt_times) >= 6, what="six attempts")
        assert cam.state in ("lost", "reconnecting") and cam.reason
        until(lambda: any(s == "camera:motion" and v is None for _, s, v in bus.events), what="the release")
    motion = bus.values("camera:motion")
    before = [v for t, v in motion if t < lost_at - 0.001 and v is not None]
    after = [v for t, v in motion if t >= lost_at and v is not None]
    assert max(before) > 0.3
    assert after == sorted(after, reverse=True) and after[-1] == 0.0, after  # eases down, to exactly 0
    assert len([v for v in after if 0 < v < max(before)]) >= 5  # gradually, not in one jump
    ease = [t for t, v in motion if t >= lost_at and v == 0.0][0] - lost_at
    assert 0.35 < ease < 1.5, ease
    times = list(cam.attempt_times)
    gaps = np.diff(times[1:])  # from the second attempt on, the file is gone and each try fails at once
    assert gaps[0] == pytest.approx(0.2, abs=0.08) and gaps[1] == pytest.approx(0.4, abs=0.1), gaps
    assert all(g == pytest.approx(0.4, abs=0.1) for g in gaps[2:]), gaps  # capped
    assert cam.stats.connects == 1 and cam.stats.errors == 0


def test_a_camera_that_does_not_exist_is_lost_without_raising():
    bus = Recorder()
    cam = Camera(bus, 99, backoff=(0.05, 0.1))
    cam.start()
    try:
        until(lambda: cam.stats.attempts >= 2, what="two attempts")
        assert cam.state in ("lost", "reconnecting") and "99" in cam.reason
        assert cam.stats.connects == 0 and cam.stats.errors == 0 and cam.latest_image() is None
    finally:
        cam.stop()
    assert cam.state == "stopped" and not cam.running
    assert not [e for e in bus.events if e[2]]  # nothing but releases was posted
