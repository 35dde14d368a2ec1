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
