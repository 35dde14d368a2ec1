"""The GL stage: upload the generated frame, blend the two newest, upscale to the output, and hand
back pixels. Window and files read the same framebuffer, so what a render writes is what the window
shows.

Upscaling is two passes of a separable Lanczos-3 (assets/shaders/resample.frag): 12 taps a pixel
instead of 36, with the weights computed once per output column and row (`resample_weights`), which
matters on Mesa's software rasteriser.

An optional third pass is video feedback (assets/shaders/trail.frag, `Trail`): the upscaled frame mixed
with the previous presented frame, zoomed, rotated and faded. It ping-pongs two half-float textures of
the output size; with the trail off it is skipped and the output is exactly the two-pass one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import moderngl
import numpy as np

from engine.errors import MasqueradeError
from engine.frame_texture import HostUpload

SHADERS = Path(__file__).resolve().parent.parent / "assets" / "shaders"


def shader(name: str) -> str:
    return (SHADERS / name).read_text()


TAPS = 6  # Lanczos-3 reads 6 source pixels per output pixel along each axis


def lanczos(x: np.ndarray, a: int = 3) -> np.ndarray:
    x = np.abs(x)
    px = np.pi * np.where(x < 1e-8, 1.0, x)
    return np.where(x < 1e-8, 1.0, np.where(x < a, a * np.sin(px) * np.sin(px / a) / (px * px), 0.0))


def resample_weights(src: int, dst: int, kind: str) -> np.ndarray:
    """[2, dst, 4] float32 for the shader: per output pixel its 6 tap weights and its first tap.

    Output pixel o samples source coordinate x = (o + 0.5) * src / dst - 0.5 (pixel centres aligned);
    Lanczos-3 weighs the 6 source pixels around x (normalised to sum 1, so flat stays flat); nearest
    puts all weight on the closest one."""
    x = (np.arange(dst) + 0.5) * src / dst - 0.5
    if kind == "lanczos":
        first = np.floor(x) - 2
        w = lanczos(x[:, None] - (first[:, None] + np.arange(TAPS)))
        w /= w.sum(axis=1, keepdims=True)
    else:
        first = np.floor(x + 0.5)
        w = np.zeros((dst, TAPS))
        w[:, 0] = 1.0
    out = np.zeros((2, dst, 4), np.float32)
    out[0, :, :3], out[0, :, 3], out[1, :, :3] = w[:, :3], first, w[:, 3:]
    return out


def fit_rect(src: tuple[int, int], dst: tuple[int, int], fit: str) -> tuple[int, int, int, int]:
    """Where an image of size `src` lands in `dst`: (x, y, w, h), centred, aspect kept."""
    sw, sh = src
    dw, dh = dst
    scale = min(dw / sw, dh / sh) if fit == "contain" else max(dw / sw, dh / sh)
    w, h = max(1, round(sw * scale)), max(1, round(sh * scale))
    return (dw - w) // 2, (dh - h) // 2, w, h


@dataclass(frozen=True)
class Trail:
    """Video feedback for one presented frame: shown = mix(new, fade x T(previous shown), amount), where T
    zooms by `zoom` and rotates by `rotate` about the centre. A trace left behind by something that moved
    falls by amount x fade per presented frame."""
    amount: float = 0.0  # weight of the previous frame: 0 off .. 0.95
    zoom: float = 1.0  # scale of the previous frame per frame (> 1 grows outward, a tunnel)
    rotate: float = 0.0  # degrees per frame, counter-clockwise
    fade: float = 1.0  # brightness of the previous frame per frame (1: trails keep their colour)

    @property
    def on(self) -> bool:
        return self.amount >= 1e-3  # a smoothed fader only approaches 0: below this it is off


class Compositor:
    def __init__(self, ctx: moderngl.Context, size: tuple[int, int], source: tuple[int, int],
                 fit: str = "contain", upscale: str = "lanczos", background=(0.0, 0.0, 0.0), upload=None):
        """`upload`: how frames reach the texture (engine/frame_texture.py: `choose`); default the host upload."""
        self.ctx = ctx
        self.fit, self.background = fit, tuple(background)
        self.kind = upscale
        self.source = source
        self.program = ctx.program(vertex_shader=shader("fullscreen.vert"),
                                   fragment_shader=shader("resample.frag"))
        self.vao = ctx.vertex_array(self.program, [])
        self.frames = [self._texture(source) for _ in range(2)]  # older, newer
        self._uploaded: list[object] = [None, None]  # which Frame each texture holds
        self.uploader = upload if upload is not None else HostUpload(ctx, source)
        self.trail_program = None  # built on the first frame with a trail
        self.resize(size)

    def _texture(self, size, components=3, dtype="f1"):
        tex = self.ctx.texture(size, components, dtype=dtype)
        tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
        tex.repeat_x = tex.repeat_y = False
        return tex

    def resize(self, size: tuple[int, int]) -> None:
        self.size = size
        self.rect = fit_rect(self.source, size, self.fit)
        self._release_trail()
        if getattr(self, "fbo", None):
            self.fbo.release()
            self.color.release()
            self.middle.release()
        self.color = self.ctx.texture(size, 4)
        self.fbo = self.ctx.framebuffer(color_attachments=[self.color])
        # after the horizontal pass: output width, source height (float keeps Lanczos overshoot exact)
        self.middle = self._texture((self.rect[2], self.source[1]), dtype="f2")
        self.middle_fbo = self.ctx.framebuffer(color_attachments=[self.middle])
        self.weights_x = self._weights(self.source[0], self.rect[2])
        self.weights_y = self._weights(self.source[1], self.rect[3])

    def _weights(self, src: int, dst: int):
        if getattr(self, "_weight_textures", None) is None:
            self._weight_textures = {}
        key = (src, dst)
        if key not in self._weight_textures:
            data = resample_weights(src, dst, self.kind)
            self._weight_textures[key] = self._texture((dst, 2), components=4, dtype="f4")
            self._weight_textures[key].write(data.tobytes())
        return self._weight_textures[key]

    def upload(self, slot: int, frame) -> None:
        """Frame's uint8 RxRx3 pixels (host array or CUDA tensor) into texture `slot`, by the frame upload."""
        if self._uploaded[slot] is frame:
            return
        rgb = frame.rgb
        assert tuple(rgb.shape) == (self.source[1], self.source[0], 3), f"frame is {rgb.shape}, expected {self.source}"
        self.uploader.upload(self.frames[slot], rgb)
        self._uploaded[slot] = frame

    def _release_trail(self) -> None:
        for thing in getattr(self, "_trail_things", []):
            thing.release()
        self._trail_things: list = []
        self.history = None  # the previous presented frame is forgotten: the next trail starts from the new frame

    def _trail_targets(self):
        """This frame's upscaled image (RGBA8) and two half-float frames that take turns as the past."""
        if not self._trail_things:
            self.fresh = self.ctx.texture(self.size, 4)
            self.fresh_fbo = self.ctx.framebuffer(color_attachments=[self.fresh])
            self.pasts = [self.ctx.texture(self.size, 4, dtype="f2") for _ in range(2)]
            for tex in self.pasts:
                tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
                tex.repeat_x = tex.repeat_y = False
            # one pass writes both what is shown (the output texture) and what the next frame reads
            self.feedback_fbos = [self.ctx.framebuffer(color_attachments=[self.color, tex]) for tex in self.pasts]
            for fbo in self.feedback_fbos:
                fbo.clear()  # no stale memory (a NaN would survive a mix weight of 0)
            self._trail_things = [*self.feedback_fbos, self.fresh_fbo, self.fresh, *self.pasts]
        if self.trail_program is None:
            self.trail_program = self.ctx.program(vertex_shader=shader("fullscreen.vert"),
                                                  fragment_shader=shader("trail.frag"))
            self.trail_vao = self.ctx.vertex_array(self.trail_program, [])
        return self.fresh_fbo

    def _feedback(self, trail: Trail) -> None:
        """shown = mix(fresh, fade x T(past), amount), into the output and the other half-float frame."""
        write = 1 if self.history == 0 else 0
        p = self.trail_program
        p["fresh"], p["past"] = 0, 1
        self.fresh.use(0)
        self.pasts[1 - write].use(1)
        p["amount"] = float(trail.amount) if self.history is not None else 0.0  # the first: the new frame
        p["zoom"], p["angle"] = float(trail.zoom), math.radians(trail.rotate)
        p["fade"], p["background"] = float(trail.fade), self.background
        self.feedback_fbos[write].use()
        self.ctx.viewport = (0, 0, *self.size)
        self.trail_vao.render(moderngl.TRIANGLES, vertices=3)
        self.history = write

    def draw(self, older, newer, mix_b: float, trail: Trail | None = None) -> None:
        """Blend `older` and `newer` (Frames) by `mix_b` and upscale into the output framebuffer; with a
        `trail` that is on, mix in the previous presented frame (video feedback)."""
        self.upload(0, older)
        self.upload(1, newer)
        blend = 0 if older is newer or mix_b >= 1.0 else 1
        first = self.frames[1] if blend == 0 else self.frames[0]
        p = self.program
        p["frame_a"], p["frame_b"], p["weights"] = 0, 1, 2
        first.use(0)
        self.frames[1].use(1)
        self.weights_x.use(2)
        p["mix_b"], p["blend"], p["flip_y"] = float(mix_b), blend, 1

        x, y, w, h = self.rect
        self.middle_fbo.use()
        self.ctx.viewport = (0, 0, w, self.source[1])
        p["axis"], p["origin"] = (1, 0), (0, 0)
        self.vao.render(moderngl.TRIANGLES, vertices=3)

        feedback = trail is not None and trail.on
        target = self._trail_targets() if feedback else self.fbo
        target.use()
        self.ctx.viewport = (0, 0, *self.size)
        target.clear(*self.background, 1.0)
        self.ctx.viewport = (x, y, w, h)
        self.middle.use(0)
        self.weights_y.use(2)
        p["blend"], p["flip_y"] = 0, 0
        p["axis"], p["origin"] = (0, 1), (x, y)
        self.vao.render(moderngl.TRIANGLES, vertices=3)
        self.ctx.viewport = (0, 0, *self.size)
        if feedback:
            self._feedback(trail)
        else:
            self.history = None  # a trail turned on later starts from its own first frame, not a stale one

    def read(self) -> np.ndarray:
        """The output as HxWx3 uint8, top row first."""
        data = self.fbo.read(components=3, alignment=1)
        return np.frombuffer(data, np.uint8).reshape(self.size[1], self.size[0], 3)[::-1]

    def release(self) -> None:
        """Free its GL objects (a show switch to another work size builds a new compositor)."""
        self._release_trail()
        things = [self.program, self.vao, *self.frames, self.uploader, self.fbo, self.color, self.middle,
                  self.middle_fbo, *self._weight_textures.values()]
        if self.trail_program is not None:
            things += [self.trail_program, self.trail_vao]
        for thing in things:
            thing.release()


class GLUnavailable(MasqueradeError):
    pass


def headless_context() -> moderngl.Context:
    """An offscreen OpenGL 3.3 context: EGL (works without any display), else the platform default."""
    try:
        return moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as egl_error:  # noqa: BLE001 - any failure means: try the platform's default
        try:
            return moderngl.create_standalone_context(require=330)
        except Exception:
            raise GLUnavailable(f"no offscreen OpenGL context: EGL failed ({egl_error}); "
                               "on Debian/Ubuntu install libegl1 libgl1-mesa-dri libegl-mesa0") from None
