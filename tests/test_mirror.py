"""Mirror mode: the camera's picture as the frame's source before the filters. A video file made here with
PyAV stands in for the camera: renders read frame floor(t x its fps) (a pure function of show time), a live
headless run reads the Camera thread's picture."""

import numpy as np
import pytest
from PIL import Image

from engine import show as shows
from engine.controls.mirror import VideoAtTime, square

from .conftest import DEFAULT_MODEL

W, H, VIDEO_FPS, COUNT = 96, 64, 8, 12  # a 3:2 camera; the model's frames are 64 x 64


def video_frames():
    """Each frame its own colour and a white square in its own place, so a frame is known by its pixels."""
    frames = []
    for i in range(COUNT):
        img = np.zeros((H, W, 3), np.uint8)
        img[:] = (40 + 15 * i, 200 - 12 * i, 90 + (i % 3) * 50)
        x = 20 + 4 * i
        img[20:40, x:x + 16] = 255
        frames.append(img)
    return frames


def write_video(path, frames, fps=VIDEO_FPS):
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.bit_rate = 8_000_000
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("camera") / "visitor.mp4", video_frames())


def show_file(tmp_path, video, camera="mirror = 1.0\nflip = false", filters="", name="show"):
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[output]\nsize = [64, 64]\nfps = 20\nupscale = "nearest"\n'
                    f'[camera]\nsource = "{video}"\n{camera}\n[osc]\nenabled = false\n{filters}')
    return path


def render_frames(path, out, seconds=2.0):
    from engine.loop import render

    render(shows.load(path), out, seconds=seconds, progress=False, device="cpu")
    return [np.asarray(Image.open(p)).astype(int) for p in sorted(out.glob("*.png"))]


def diff(a, b):
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_a_render_shows_the_video_frame_of_its_show_time(tmp_path, video):
    expected = [square(f, 64) for f in video_frames()]
    got = render_frames(show_file(tmp_path, video), tmp_path / "mirror")
    assert len(got) == 40
    for i, img in enumerate(got):
        want = int(np.floor(i / 20 * VIDEO_FPS + 1e-6)) % COUNT  # 12 frames, looped: 40 show frames reach 16
        nearest = min(range(COUNT), key=lambda k: diff(img, expected[k]))
        assert nearest == want, (i, nearest, want)
        assert diff(img, expected[want]) < 4, (i, diff(img, expected[want]))  # the codec's loss only


def test_a_filter_works_on_the_camera_picture_and_a_half_mirror_blends(tmp_path, video):
    seconds = 0.5
    mirror = render_frames(show_file(tmp_path, video), tmp_path / "mirror", seconds)
    graded = render_frames(show_file(tmp_path, video, filters='[[filters]]\nkind = "grade"\nexposure = 1.0\n',
                                     name="graded"), tmp_path / "graded", seconds)
    for m, g in zip(mirror, graded):
        assert g.mean() > m.mean() + 20  # one stop brighter: the filter ran on the camera's picture
        assert np.corrcoef(m[..., 0].ravel(), g[..., 0].ravel())[0, 1] > 0.8  # and it is still that picture
    generator = render_frames(show_file(tmp_path, video, "mirror = 0.0", name="plain"), tmp_path / "plain", seconds)
    half = render_frames(show_file(tmp_path, video, "mirror = 0.5\nflip = false", name="half"), tmp_path / "half",
                         seconds)
    for m, p, h in zip(mirror, generator, half):
        assert diff(m, p) > 20
        assert np.abs(h - (m + p) / 2).max() <= 1.5


def test_the_video_is_read_as_a_pure_function_of_show_time(video):
    times = [0.0, 0.1, 0.26, 0.5, 1.49, 1.5, 2.6, 0.125]
    in_order = {t: VideoAtTime(video)(t) for t in sorted(times)}
    reader = VideoAtTime(video)
    for t in times + times[::-1]:  # any order, backwards and past the end (looped): the same pictures
        assert np.array_equal(reader(t), in_order[t]), t
    assert reader.fps == VIDEO_FPS and reader.count == COUNT
    held = VideoAtTime(video, loop=False)
    assert np.array_equal(held(100.0), in_order[1.49])  # frame 11, the last, held
    assert not np.array_equal(in_order[0.125], in_order[0.1])  # frame 1 is not frame 0


def test_mirror_keys_are_checked(tmp_path, video):
    with pytest.raises(shows.ShowError, match="camera.mirror must be 0..1"):
        shows.load(show_file(tmp_path, video, "mirror = 2.0"))
    path = tmp_path / "nocam.toml"
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[camera]\nmirror = 1.0\n')
    with pytest.raises(shows.ShowError, match="camera.mirror needs a camera"):
        shows.load(path)
    from engine.loop import render

    live_camera = shows.load(show_file(tmp_path, video, "mirror = 1.0").parent / "show.toml")
    live_camera.camera.source = "0"
    with pytest.raises(shows.ShowError, match="needs camera.source to be a video file"):
        render(live_camera, tmp_path / "x", seconds=0.1, progress=False, device="cpu")


def test_a_live_run_mirrors_the_camera_thread(tmp_path):
    from engine.loop import LiveOptions, run_live

    colour = (230, 40, 120)
    still = [np.full((H, W, 3), colour, np.uint8)] * 16
    video = write_video(tmp_path / "still.mp4", still)
    out = tmp_path / "live"
    run = run_live(shows.load(show_file(tmp_path, video, "mirror = 1.0\nloop = true")),
                   LiveOptions(device="cpu", headless=True, frames=300, out=out, stills=tmp_path))
    assert run.frames == 300
    last = np.asarray(Image.open(sorted(out.glob("*.png"))[-1])).astype(int)
    assert np.abs(last - colour).mean() < 6, last.mean(axis=(0, 1))  # the camera's picture, not the model's


def test_a_chunk_of_a_distributed_render_mirrors_the_same_frames(tmp_path, video):
    from engine.clock import FixedStep
    from engine.distributed import render_chunk

    path = show_file(tmp_path, video)
    whole = render_frames(path, tmp_path / "whole", seconds=1.0)
    chunk = render_chunk(shows.load(path), 9, 14, 20, (64, 64), "cpu", None)
    assert FixedStep(20).at(9).t == 0.45
    for i, frame in zip(range(9, 14), chunk):
        assert np.array_equal(frame, whole[i]), f"frame {i} differs"


def test_a_trail_show_is_refused_by_the_distributed_render(tmp_path, video):
    from engine.distributed import DistributedError, render_distributed

    path = tmp_path / "trail.toml"
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[output]\ntrail = 0.5\n')
    with pytest.raises(DistributedError, match="trail"):
        render_distributed(shows.load(path), tmp_path / "out", seconds=1, workers=2, progress=False)



def test_a_mirror_flips_the_visitor_left_right_by_default(tmp_path, video):
    as_filmed = render_frames(show_file(tmp_path, video, name="filmed"), tmp_path / "filmed", seconds=0.5)
    mirrored = render_frames(show_file(tmp_path, video, camera="mirror = 1.0", name="mirrored"), tmp_path / "m",
                             seconds=0.5)
    for a, b in zip(as_filmed, mirrored):
        assert np.array_equal(a[:, ::-1], b)


def test_a_full_mirror_does_not_run_the_model(tmp_path, video):
    from engine.controls import mirror
    from engine.frame import Tick
    from engine.pipeline import Pipeline

    show = shows.load(show_file(tmp_path, video))
    p = Pipeline(show, "cpu")
    p.mirror = mirror.for_render(show)
    for i in range(3):
        p.generate(Tick(i, i / 20))
    assert "mirror" in p.times.mean_ms and "generate" not in p.times.mean_ms
