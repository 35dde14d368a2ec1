"""Video feedback (the trail pass of engine/compositor.py) on real OpenGL pixels (Mesa EGL here), and through a
rendered show whose trail an OSC fader moves."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from engine.compositor import Compositor, Trail
from engine.frame import Frame, Tick

from .conftest import DEFAULT_MODEL

N = 32  # source and output side: the upscale is 1:1, so a source pixel is an output pixel


def frame(rgb, i=0):
    return Frame(Tick(i, i / 30), None, np.ascontiguousarray(rgb, dtype=np.uint8))


def dot(x, y, value=255):
    rgb = np.zeros((N, N, 3), np.uint8)
    if x is not None:
        rgb[y, x] = value
    return frame(rgb)


def run(c, frames, trail):
    out = []
    for f in frames:
        c.draw(f, f, 1.0, trail)
        out.append(c.read().copy())
    return out


def test_a_moving_dot_leaves_a_trail_that_falls_by_amount_times_fade(gl):
    amount, fade = 0.8, 0.9
    c = Compositor(gl, (N, N), (N, N), upscale="nearest")
    shown = run(c, [dot(4 + k, 10) for k in range(12)], Trail(amount, fade=fade))
    last = shown[-1][10, :, 0].astype(float)  # the row the dot travels along
    head = 4 + 11
    # the first frame with a trail is the new frame alone; after it the dot is dimmed by (1 - amount)
    assert abs(last[head] - 255 * (1 - amount)) <= 1
    for k in range(1, 8):  # k frames behind the head: (amount x fade)^k of it
        expected = 255 * (1 - amount) * (amount * fade) ** k
        assert abs(last[head - k] - expected) <= 1, (k, last[head - k], expected)
    assert abs(last[4] - 255 * (amount * fade) ** 11) <= 1  # the first dot was shown at full brightness
    assert np.all(shown[-1][:10] == 0) and np.all(shown[-1][11:] == 0)  # no zoom or rotation: the row only


def test_trail_off_is_byte_identical_to_no_trail(gl):
    rng = np.random.default_rng(1)
    frames = [frame(rng.integers(0, 256, (16, 16, 3))) for _ in range(4)]
    plain = Compositor(gl, (96, 72), (16, 16), background=(0.1, 0.2, 0.3))
    off = Compositor(gl, (96, 72), (16, 16), background=(0.1, 0.2, 0.3))
    expected = run(plain, frames, None)
    assert all(np.array_equal(a, b) for a, b in zip(expected, run(off, frames, Trail(0.0, 1.2, 7.0, 0.5))))
    on = run(off, frames, Trail(0.7))  # a trail on, then off again: the very next frame is the plain one
    assert not np.array_equal(on[-1], expected[-1])
    assert np.array_equal(run(off, frames[-1:], Trail(0.0))[0], expected[-1])
    # turned on again, it starts from its own first frame (the plain one), not from a stale past
    assert np.array_equal(run(off, frames[:1], Trail(0.7))[0], expected[0])


def test_faint_trails_fade_out_instead_of_sticking_at_an_8_bit_level(gl):
    c = Compositor(gl, (N, N), (N, N), upscale="nearest")
    grey = frame(np.full((N, N, 3), 200))
    shown = run(c, [grey] + [dot(None, None)] * 120, Trail(0.93))
    assert shown[1].max() > 150  # it was there
    assert shown[-1].max() == 0  # 200 x 0.93^120 = 0.03: gone (an 8-bit past would hold 0.93 v + 0.5 >= v at 7)


def brightest(img):
    y, x = np.unravel_index(np.argmax(img[..., 0]), img.shape[:2])
    return x, y


def test_zoom_grows_the_past_outward_from_the_centre(gl):
    c = Compositor(gl, (N, N), (N, N), upscale="nearest")
    centre = N / 2 - 0.5  # pixel-centre coordinates of the middle
    shown = run(c, [dot(20, 16), dot(None, None)], Trail(0.9, zoom=1.5))
    x, y = brightest(shown[1])
    assert shown[1][y, x, 0] > 20
    assert abs(x - (centre + 1.5 * (20 - centre))) <= 1 and abs(y - 16) <= 1  # 20 -> ~22.75


@pytest.mark.parametrize("degrees", [90.0, -90.0])
def test_rotation_turns_the_past_counter_clockwise_on_screen(gl, degrees):
    c = Compositor(gl, (N, N), (N, N), upscale="nearest")
    shown = run(c, [dot(24, 16), dot(None, None)], Trail(0.9, rotate=degrees))
    x, y = brightest(shown[1])
    # right of the centre, turned +90 degrees: above it on screen (image rows grow downward); -90: below
    assert abs(x - 16) <= 1 and (y < 10 if degrees > 0 else y > 21), (x, y)


def show_file(tmp_path, output=""):
    path = tmp_path / "show.toml"
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[walk]\nseed = 3\n[output]\nsize = [96, 64]\nfps = 10\n'
                    f'{output}\n[osc]\nenabled = false\n')
    return path


def render_frames(show_path, out, replay=None):
    from engine import show as shows
    from engine.loop import render

    render(shows.load(show_path), out, seconds=1.2, progress=False, device="cpu", replay=replay)
    return [np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))]


def test_a_show_with_a_trail_renders_frame_exact_and_an_osc_fader_moves_it(tmp_path):
    plain = render_frames(show_file(tmp_path), tmp_path / "plain")
    trail_show = show_file(tmp_path, "trail = 0.9\ntrail_zoom = 1.05\ntrail_rotate = 3\ntrail_fade = 0.95")
    once = render_frames(trail_show, tmp_path / "once")
    again = render_frames(trail_show, tmp_path / "again")
    assert len(plain) == len(once) == 12
    assert all(np.array_equal(a, b) for a, b in zip(once, again))  # a function of the frames in order
    assert np.array_equal(once[0], plain[0])  # the first frame has no past
    assert all(np.abs(a.astype(int) - b).mean() > 1 for a, b in zip(once[2:], plain[2:]))
    # an OSC fader (replayed at its show time) brings the trail in on the plain show from t = 0.6 s
    events = tmp_path / "set.jsonl"
    events.write_text(json.dumps({"t": 0.6, "source": "osc:/masq/output/trail", "value": 1.0}) + "\n")
    faded = render_frames(show_file(tmp_path), tmp_path / "faded", replay=events)
    assert all(np.array_equal(a, b) for a, b in zip(faded[:6], plain[:6]))
    assert all(np.abs(a.astype(int) - b).mean() > 1 for a, b in zip(faded[8:], plain[8:]))


def test_trail_keys_are_checked_when_the_show_loads(tmp_path):
    from engine import show as shows

    with pytest.raises(shows.ShowError, match=r"output\.trail must be 0\.\.0\.95, got 1.0"):
        shows.load(show_file(tmp_path, "trail = 1.0"))
    params = {p.name: p for p in shows.control_params(shows.load(show_file(tmp_path, "trail_rotate = -4")))}
    assert params["output.trail_rotate"].default == -4.0 and params["output.trail"].default == 0.0
    assert math.isclose(params["output.trail_zoom"].default, 1.0)
