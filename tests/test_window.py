"""The real window: pygame + moderngl under an X server (Xvfb), keys and all.

Each test's body runs in a fresh process, as a user's `masquerade run` does: GL driver dispatch
(glvnd) lets a thread hold one API's context at a time, and the other tests leave an EGL one.
"""

import multiprocessing

import numpy as np

from .conftest import DEFAULT_SHOW


def in_fresh_process(fn, *args):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def _draw_and_read_screen():
    from engine.compositor import Compositor
    from engine.frame import Frame, Tick
    from engine.window import Window

    window = Window((320, 200))
    try:
        c = Compositor(window.ctx, window.size, (16, 16))
        rgb = np.zeros((16, 16, 3), np.uint8)
        rgb[:8] = (250, 40, 10)
        rgb[8:] = (10, 40, 250)
        f = Frame(Tick(0, 0.0), None, rgb)
        c.draw(f, f, 1.0)
        window.present(c.fbo)
        screen = np.frombuffer(window.ctx.screen.read(components=3, alignment=1), np.uint8)
        return screen.reshape(200, 320, 3)[::-1].copy(), c.read().copy()
    finally:
        window.close()


def test_window_shows_what_the_renderer_made(xvfb):
    screen, rendered = in_fresh_process(_draw_and_read_screen)
    assert np.array_equal(screen, rendered)
    assert tuple(screen[20, 160]) == (250, 40, 10) and tuple(screen[180, 160]) == (10, 40, 250)


def _run_window(frames, stats):
    import os

    import torch

    from engine import show as shows
    from engine.loop import LiveOptions, run_live

    os.environ.pop("OMP_NUM_THREADS", None)
    torch.set_num_threads(os.cpu_count() or 1)
    shown = run_live(shows.load(DEFAULT_SHOW),
                     LiveOptions(size=(320, 180), stats=stats, frames=frames, device="cpu")).frames
    return shown, torch.get_num_threads()


def test_live_window_runs_with_stats_overlay(xvfb):
    import os

    shown, threads = in_fresh_process(_run_window, 20, True)
    assert shown == 20
    # Xvfb's GL is Mesa's llvmpipe, on the CPU: torch leaves it a core (5 -> 30 fps on 2 cores)
    assert threads == max(1, (os.cpu_count() or 1) - 1)


def _type_keys_then_run(stills):
    """Space, s, l and q as a visitor's keyboard sends them: through SDL's event queue, typed as soon
    as the window exists."""
    import pygame

    import engine.window as window_module
    from engine import show as shows
    from engine.loop import LiveOptions, run_live

    original_open = window_module.Window._open

    def open_then_type(self):
        original_open(self)
        for key in (pygame.K_SPACE, pygame.K_s, pygame.K_l, pygame.K_q):  # l: MIDI learn on
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))

    window_module.Window._open = open_then_type
    return run_live(shows.load(DEFAULT_SHOW), LiveOptions(size=(320, 180), stills=stills, device="cpu")).frames


def test_keys_pause_save_a_still_and_quit(xvfb, tmp_path):
    stills = tmp_path / "stills"
    shown = in_fresh_process(_type_keys_then_run, stills)
    assert shown == 1  # q ends the show after the frame it was typed in
    saved = list(stills.glob("*.png"))
    assert len(saved) == 1
    from PIL import Image

    still = np.asarray(Image.open(saved[0]))
    assert still.shape == (180, 320, 3)
    assert still[:, 100:220].std() > 5  # the picture on screen, not a blank
