"""What the wall shows while the kiosk is closed: black, or one still picture, full screen.

    python -m installation.kiosk.still [PICTURE.png] [--size WxH]

A process of its own (pygame only, never torch), started by the supervisor outside opening hours and
stopped when they begin, so the engine and its GPU rest while a projector left on shows something
intended instead of a desktop. It redraws twice a second at most (an X server may ask it to) and
otherwise sleeps; a picture that cannot be read gives black, with the reason on stderr.

No reachable display is one line and exit code 2, never SDL's silent fallback to an invisible offscreen
window: a still started before its X server takes connections would otherwise sit unseen all night, while
the supervisor, seeing it alive, never tries again.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m installation.kiosk.still", description=__doc__.split("\n\n")[0])
    ap.add_argument("picture", nargs="?", default="", help="a PNG/JPEG shown fitted to the screen; none: black")
    ap.add_argument("--size", default="", help="WxH window instead of full screen (tests, a second display)")
    args = ap.parse_args(argv)
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    where = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or "none set"
    try:
        pygame.display.init()
        if pygame.display.get_driver() in ("offscreen", "dummy"):
            raise pygame.error("SDL fell back to an invisible window")
        if args.size:
            w, h = (int(v) for v in args.size.lower().split("x"))
            screen = pygame.display.set_mode((w, h), pygame.NOFRAME)
        else:
            screen = pygame.display.set_mode((0, 0), pygame.FULLSCREEN)
    except pygame.error as e:
        print(f"still: no usable display (DISPLAY={where}): {e}", file=sys.stderr, flush=True)
        return 2
    pygame.mouse.set_visible(False)
    picture = None
    if args.picture:
        try:
            picture = pygame.image.load(args.picture)
        except (pygame.error, OSError) as e:
            print(f"still: {args.picture}: cannot be shown ({e}); showing black", file=sys.stderr, flush=True)
    clock = pygame.time.Clock()
    while True:
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                pygame.quit()
                return 0
        screen.fill((0, 0, 0))
        if picture is not None:
            sw, sh = screen.get_size()
            pw, ph = picture.get_size()
            scale = min(sw / pw, sh / ph)
            fitted = pygame.transform.smoothscale(picture, (max(1, round(pw * scale)), max(1, round(ph * scale))))
            screen.blit(fitted, fitted.get_rect(center=(sw // 2, sh // 2)))
        pygame.display.flip()
        clock.tick(2)


if __name__ == "__main__":
    sys.exit(main())
