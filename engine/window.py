"""The OpenGL window: pygame owns the window and its events, moderngl draws into it.

The compositor renders every frame into its own framebuffer; the window copies that to the screen
and draws the overlay (stats) on top, so files and screenshots never carry the overlay.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings

import moderngl

from engine.compositor import shader
from engine.errors import MasqueradeError

log = logging.getLogger("masquerade")


def display_available() -> bool:
    """False on a Linux machine with no X or Wayland display (a server, CI, SSH without -X)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class DisplayError(MasqueradeError):
    pass


def x_screens() -> list[tuple[int, int]]:
    """The screens of the X server in DISPLAY, as (width, height) (libX11 through ctypes); [] when there is
    no X display or no libX11. A server with several screens (Xvfb -screen 0 ... -screen 1 ..., a
    "Zaphod" multi-head X setup) has one root window per screen."""
    import ctypes
    import ctypes.util

    if not os.environ.get("DISPLAY"):
        return []
    try:
        x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    except OSError:
        return []
    x11.XOpenDisplay.restype, x11.XOpenDisplay.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    for name in ("XScreenCount", "XCloseDisplay"):
        getattr(x11, name).argtypes = [ctypes.c_void_p]
    for name in ("XDisplayWidth", "XDisplayHeight"):
        getattr(x11, name).argtypes = [ctypes.c_void_p, ctypes.c_int]
    dpy = x11.XOpenDisplay(None)
    if not dpy:
        return []
    try:
        return [(x11.XDisplayWidth(dpy, i), x11.XDisplayHeight(dpy, i)) for i in range(x11.XScreenCount(dpy))]
    finally:
        x11.XCloseDisplay(dpy)


def choose_x_screen(display: int) -> int:
    """`--display N` on an X server with several screens: SDL2 lists them as displays but opens every
    window on the first (their bounds all start at 0,0), so point DISPLAY at screen N itself and have SDL
    see that one screen (no XRandR). Call before SDL starts; returns the SDL display index to use."""
    if os.environ.get("WAYLAND_DISPLAY") or os.environ.get("SDL_VIDEODRIVER", "x11") != "x11":
        return display
    screens = x_screens()
    if len(screens) < 2:
        return display  # one X screen: SDL's displays are its monitors, with their own positions
    if not 0 <= display < len(screens):
        raise DisplayError(f"--display {display}: this X server ({os.environ['DISPLAY']}) has {len(screens)} "
                           f"screens: {describe(screens)}")
    host, _, rest = os.environ["DISPLAY"].rpartition(":")
    os.environ["DISPLAY"] = f"{host}:{rest.split('.')[0]}.{display}"
    os.environ["SDL_VIDEO_X11_XRANDR"] = "0"  # SDL then lists the default screen only: the one asked for
    return 0


def describe(sizes) -> str:
    return ", ".join(f"{i} ({w}x{h})" for i, (w, h) in enumerate(sizes))


class Window:
    def __init__(self, size: tuple[int, int], fullscreen: bool = False, display: int = 0,
                 title: str = "Masquerade", max_fps: float = 60.0):
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame

        self.pg = pygame
        asked, display = display, choose_x_screen(display)
        try:
            pygame.display.init()
        except pygame.error as e:
            where = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or "no display"
            raise DisplayError(f"cannot open a window ({where}): {e}; try --headless") from None
        if pygame.display.get_driver() in ("offscreen", "dummy"):  # SDL's silent fallback: no one would see it
            where = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or "none set"
            pygame.display.quit()
            raise DisplayError(f"cannot open a window: no usable display (DISPLAY={where}); "
                               "use --headless, or run under xvfb-run -a")
        pygame.font.init()
        count = pygame.display.get_num_displays()
        if not 0 <= display < count:
            sizes = pygame.display.get_desktop_sizes()
            pygame.display.quit()
            raise DisplayError(f"--display {asked}: this machine has {count} display(s): {describe(sizes)}")
        if asked != display:
            log.info("--display %d: X screen %s", asked, os.environ.get("DISPLAY"))
        self.display, self.windowed_size, self.title = display, size, title
        self.fullscreen = fullscreen
        self.max_fps, self._last_flip = max_fps, 0.0
        self.font = pygame.font.Font(None, 28)
        self._open()

    def _open(self) -> None:
        pg = self.pg
        pg.display.gl_set_attribute(pg.GL_CONTEXT_MAJOR_VERSION, 3)
        pg.display.gl_set_attribute(pg.GL_CONTEXT_MINOR_VERSION, 3)
        pg.display.gl_set_attribute(pg.GL_CONTEXT_PROFILE_MASK, pg.GL_CONTEXT_PROFILE_CORE)
        flags = pg.OPENGL | pg.DOUBLEBUF
        if self.fullscreen:
            size = pg.display.get_desktop_sizes()[self.display]
            flags |= pg.FULLSCREEN
        else:
            size = self.windowed_size
        with warnings.catch_warnings():  # no vsync (Xvfb, some drivers): pacing falls to the loop
            warnings.simplefilter("ignore")
            pg.display.set_mode(size, flags, display=self.display, vsync=1)
        pg.display.set_caption(self.title)
        pg.mouse.set_visible(not self.fullscreen)
        self.ctx = moderngl.create_context(require=330)
        self.size = pg.display.get_window_size()
        self._overlay_prog = self.ctx.program(vertex_shader=shader("fullscreen.vert"),
                                              fragment_shader=shader("overlay.frag"))
        self._overlay_vao = self.ctx.vertex_array(self._overlay_prog, [])
        self._overlay_tex = None

    def toggle_fullscreen(self) -> None:
        """Reopen the window; the GL context is new, so the caller rebuilds what it drew with."""
        self.fullscreen = not self.fullscreen
        self.ctx.release()
        self._open()

    def events(self) -> list[str]:
        """Pending input as actions: "quit", "fullscreen", "pause", "still", "learn" (MIDI learn on / off)."""
        pg = self.pg
        actions = []
        for event in pg.event.get():
            if event.type == pg.QUIT:
                actions.append("quit")
            elif event.type == pg.KEYDOWN:
                action = {pg.K_q: "quit", pg.K_ESCAPE: "quit", pg.K_f: "fullscreen",
                          pg.K_SPACE: "pause", pg.K_s: "still", pg.K_l: "learn"}.get(event.key)
                if action:
                    actions.append(action)
        return actions

    def present(self, fbo: moderngl.Framebuffer, overlay_text: str = "") -> None:
        self.ctx.copy_framebuffer(self.ctx.screen, fbo)
        if overlay_text:
            self._draw_overlay(overlay_text)
        self.pg.display.flip()
        # With vsync the flip waits for the display; without it (some drivers, Xvfb) the loop would
        # spin and starve the model's thread, so cap it at the display rate we aim for.
        now = time.monotonic()
        wait = self._last_flip + 1 / self.max_fps - now
        if wait > 0:
            time.sleep(wait)
        self._last_flip = max(now, self._last_flip + 1 / self.max_fps)

    def _draw_overlay(self, text: str) -> None:
        surface = self.font.render(text, True, (255, 255, 255), (0, 0, 0))
        w, h = surface.get_size()
        rgb = self.pg.image.tobytes(surface, "RGB")  # top row first; the overlay shader flips
        if self._overlay_tex is None or self._overlay_tex.size != (w, h):
            if self._overlay_tex is not None:
                self._overlay_tex.release()
            self._overlay_tex = self.ctx.texture((w, h), 3)
        self._overlay_tex.write(rgb, alignment=1)
        self.ctx.screen.use()
        self.ctx.viewport = (8, self.size[1] - h - 8, w, h)
        self._overlay_tex.use(0)
        self._overlay_prog["overlay"] = 0
        self._overlay_vao.render(moderngl.TRIANGLES, vertices=3)
        self.ctx.viewport = (0, 0, *self.size)

    def close(self) -> None:
        self.pg.display.quit()
