"""The GL stage on a real OpenGL context (Mesa EGL here): upscale, fit, blend, orientation."""

import numpy as np
import pytest

from engine.compositor import Compositor, fit_rect
from engine.frame import Frame, Tick


def frame(rgb):
    return Frame(Tick(0, 0.0), None, np.ascontiguousarray(rgb, dtype=np.uint8))


def quadrants():
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8, :8] = (255, 0, 0)    # top left red
    rgb[:8, 8:] = (0, 255, 0)    # top right green
    rgb[8:, :8] = (0, 0, 255)    # bottom left blue
    rgb[8:, 8:] = (255, 255, 255)
    return frame(rgb)


def test_upscale_keeps_orientation_and_colours(gl):
    c = Compositor(gl, (160, 160), (16, 16))
    c.draw(quadrants(), quadrants(), 1.0)
    out = c.read()
    assert out.shape == (160, 160, 3)
    assert tuple(out[20, 20]) == (255, 0, 0)
    assert tuple(out[20, 140]) == (0, 255, 0)
    assert tuple(out[140, 20]) == (0, 0, 255)
    assert tuple(out[140, 140]) == (255, 255, 255)


def test_lanczos_is_flat_on_flat_input_and_smoother_than_nearest(gl):
    flat = frame(np.full((16, 16, 3), 77))
    c = Compositor(gl, (200, 200), (16, 16))
    c.draw(flat, flat, 1.0)
    assert np.all(c.read() == 77)
    ramp = np.repeat(np.linspace(0, 255, 16).astype(np.uint8)[None, :, None], 16, 0).repeat(3, 2)
    c.draw(frame(ramp), frame(ramp), 1.0)
    lanczos_levels = len(np.unique(c.read()[100, :, 0]))
    n = Compositor(gl, (200, 200), (16, 16), upscale="nearest")
    n.draw(frame(ramp), frame(ramp), 1.0)
    assert len(np.unique(n.read()[100, :, 0])) == 16  # blocks
    assert lanczos_levels > 100  # a smooth gradient


def test_contain_letterboxes_with_the_background(gl):
    c = Compositor(gl, (320, 180), (16, 16), fit="contain", background=(0.0, 0.0, 1.0))
    white = frame(np.full((16, 16, 3), 255))
    c.draw(white, white, 1.0)
    out = c.read()
    x, y, w, h = fit_rect((16, 16), (320, 180), "contain")
    assert (w, h) == (180, 180)
    assert tuple(out[90, 10]) == (0, 0, 255) and tuple(out[90, 310]) == (0, 0, 255)
    assert np.all(out[:, x + 2:x + w - 2] == 255)


def test_cover_fills_the_screen(gl):
    c = Compositor(gl, (320, 180), (16, 16), fit="cover", background=(0.2, 0.4, 0.6))
    c.draw(quadrants(), quadrants(), 1.0)
    out = c.read()
    edges = np.concatenate([out[0], out[-1], out[:, 0], out[:, -1]])
    assert not np.any(np.all(np.abs(edges.astype(int) - (51, 102, 153)) <= 1, axis=1))  # no border
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[179, 319]) == (255, 255, 255)


@pytest.mark.parametrize("mix", [0.0, 0.25, 0.5, 1.0])
def test_blend_between_two_frames(gl, mix):
    c = Compositor(gl, (64, 64), (16, 16))
    black, white = frame(np.zeros((16, 16, 3))), frame(np.full((16, 16, 3), 200))
    c.draw(black, white, mix)
    assert np.abs(c.read().astype(float) - 200 * mix).max() <= 1


def test_resize(gl):
    c = Compositor(gl, (64, 64), (16, 16))
    c.resize((100, 50))
    c.draw(quadrants(), quadrants(), 1.0)
    assert c.read().shape == (50, 100, 3)


class Collect:
    """What the sinks' Outputs receive (`offer(rgb, tick)`), kept in order."""

    def __init__(self):
        self.frames = []

    def offer(self, rgb, tick):
        self.frames.append((rgb.copy(), tick))


def test_live_readback_hands_every_frame_on_in_order_across_a_compositor_change(gl):
    """The live loop's sinks get each frame one frame late, through pixel buffers; when the compositor is
    replaced (a kiosk switch to another work size) the old one's frame in flight comes first, and the end of the
    run flushes the last: none lost, none out of order, each the pixels that were drawn."""
    from engine.offline import LiveReadback

    collect = Collect()
    readback = LiveReadback(collect)
    first, second = Compositor(gl, (64, 36), (16, 16)), Compositor(gl, (64, 36), (8, 8))
    expected = []
    for i in range(7):
        c = first if i < 4 else second
        grey = 30 * i + 10
        c.draw(*[frame(np.full((c.source[1], c.source[0], 3), grey))] * 2, 1.0)
        expected.append(c.read())
        readback.offer(c, Tick(i, i / 10))
        assert len(collect.frames) == i  # one frame late (at i == 4 the switch handed frame 3 on)
    readback.flush()
    assert [t.index for _, t in collect.frames] == list(range(7))
    for (rgb, tick), want in zip(collect.frames, expected, strict=True):
        assert np.array_equal(rgb, want), tick
    assert readback.ring is None
    first.release()
    second.release()
