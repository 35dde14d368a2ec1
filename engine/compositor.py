"""The GL stage: upload the generated frame, blend the two newest, upscale to the output, and hand
back pixels. Window and files read the same framebuffer, so what a render writes is what the window
shows.

Upscaling is two passes of a separable Lanczos-3 (assets/shaders/resample.frag): 12 taps a pixel
instead of 36, with the weights computed once per output column and row (`resample_weights`), which
matters on Mesa's software rasteriser.
"""

from __future__ import annotations

from pathlib import Path

import moderngl
import numpy as np

from engine.errors import MasqueradeError

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


class Compositor:
    def __init__(self, ctx: moderngl.Context, size: tuple[int, int], source: tuple[int, int],
                 fit: str = "contain", upscale: str = "lanczos", background=(0.0, 0.0, 0.0)):
        self.ctx = ctx
        self.fit, self.background = fit, tuple(background)
        self.kind = upscale
        self.source = source
        self.program = ctx.program(vertex_shader=shader("fullscreen.vert"),
                                   fragment_shader=shader("resample.frag"))
        self.vao = ctx.vertex_array(self.program, [])
        self.frames = [self._texture(source) for _ in range(2)]  # older, newer
        self._uploaded: list[object] = [None, None]  # which Frame each texture holds
        self.pbo = ctx.buffer(reserve=source[0] * source[1] * 3)
        self.resize(size)

    def _texture(self, size, components=3, dtype="f1"):
        tex = self.ctx.texture(size, components, dtype=dtype)
        tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
        tex.repeat_x = tex.repeat_y = False
        return tex

    def resize(self, size: tuple[int, int]) -> None:
        self.size = size
        self.rect = fit_rect(self.source, size, self.fit)
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
        """Frame's uint8 RxRx3 pixels into texture `slot`, through a pixel buffer object."""
        if self._uploaded[slot] is frame:
            return
        rgb = frame.rgb
        assert rgb.shape == (self.source[1], self.source[0], 3), f"frame is {rgb.shape}, expected {self.source}"
        self.pbo.write(np.ascontiguousarray(rgb))
        self.frames[slot].write(self.pbo, alignment=1)
        self._uploaded[slot] = frame

    def draw(self, older, newer, mix_b: float) -> None:
        """Blend `older` and `newer` (Frames) by `mix_b` and upscale into the output framebuffer."""
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

        self.fbo.use()
        self.ctx.viewport = (0, 0, *self.size)
        self.fbo.clear(*self.background, 1.0)
        self.ctx.viewport = (x, y, w, h)
        self.middle.use(0)
        self.weights_y.use(2)
        p["blend"], p["flip_y"] = 0, 0
        p["axis"], p["origin"] = (0, 1), (x, y)
        self.vao.render(moderngl.TRIANGLES, vertices=3)
        self.ctx.viewport = (0, 0, *self.size)

    def read(self) -> np.ndarray:
        """The output as HxWx3 uint8, top row first."""
        data = self.fbo.read(components=3, alignment=1)
        return np.frombuffer(data, np.uint8).reshape(self.size[1], self.size[0], 3)[::-1]


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
