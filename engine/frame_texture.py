"""How a generated frame reaches the compositor's texture: the one seam between torch and OpenGL.

    HostUpload    every machine       uint8 HxWx3 on the host -> pixel buffer object -> texture (a GL-side copy).
                                      A CUDA tensor is copied to the host first: any GPU without interop.
    CudaInterop   CUDA + GL on one GPU  the pixel buffer object registered with CUDA once
                                      (cudaGraphicsGLRegisterBuffer); per frame: map, one device-to-device
                                      cudaMemcpyAsync from the torch tensor, unmap, then the same GL-side copy
                                      into the texture. The frame never visits host memory.

Both take the same bytes, `engine.frame.quantise`'s [H, W, 3] uint8 (quantised and laid out on the device), and the
texture gets them through the same pixel buffer, so the pixels are the same. The buffer is registered rather than
the texture because CUDA cannot register a 3-channel (GL_RGB8) texture, the compositor's frame format.

`choose` picks one at start and says which and why in one line: interop needs the frames on a CUDA device, the
`cuda-bindings` package (`pip install 'masquerade[cuda]'`, imported only then), and the GL context on that same
GPU (cudaGLGetDevices); any failure there (an old driver, a Mesa context, registration refused) is that one line and
the host upload, never a crash. Sinks that need host pixels read the compositor's framebuffer back through their
own pixel buffers (engine/offline.py `Readback`), off the upload's path.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("masquerade")


class InteropUnavailable(Exception):
    """CUDA-OpenGL interop cannot be used here; the message says why, in a few words."""


class HostUpload:
    """Host pixels -> pixel buffer object -> texture: today's upload, on every machine."""

    name = "host"
    on_device = False  # frames come as host arrays

    def __init__(self, ctx, size: tuple[int, int]):
        self.size = size
        self.pbo = ctx.buffer(reserve=size[0] * size[1] * 3)

    def upload(self, texture, pixels) -> None:
        """`pixels` [H, W, 3] uint8 (a numpy array, or a torch tensor on any device) into `texture`."""
        if not isinstance(pixels, np.ndarray):
            pixels = pixels.cpu().numpy()  # a GPU without interop: one copy to the host
        self.pbo.write(np.ascontiguousarray(pixels))
        texture.write(self.pbo, alignment=1)

    def release(self) -> None:
        self.pbo.release()


def _check(result, what: str):
    """A cuda.bindings call's (error, *values): the values, or InteropUnavailable naming the call and the error."""
    from cuda.bindings import runtime as rt

    error, *values = result
    if error != rt.cudaError_t.cudaSuccess:
        name = rt.cudaGetErrorName(error)[1]
        raise InteropUnavailable(f"{what}: {name.decode() if isinstance(name, bytes) else error}")
    return values[0] if len(values) == 1 else values


class CudaInterop:
    """CUDA tensor -> (device-to-device) pixel buffer object -> texture. Build it with the GL context current, on
    the thread that draws (the compositor's)."""

    name = "cuda-gl interop"
    on_device = True  # frames come as CUDA tensors (Pipeline.frames_on_device)

    def __init__(self, ctx, size: tuple[int, int], device):
        from cuda.bindings import runtime as rt  # the optional extra: imported only on CUDA

        self.rt, self.size, self.device = rt, size, device
        self.nbytes = size[0] * size[1] * 3
        self.host = HostUpload(ctx, size)  # its buffer is the one CUDA writes; host arrays still go through it
        flags = rt.cudaGraphicsRegisterFlags.cudaGraphicsRegisterFlagsWriteDiscard
        try:
            with _on(device):  # the runtime registers with its current device: the frames' one
                self.resource = _check(rt.cudaGraphicsGLRegisterBuffer(self.host.pbo.glo, flags),
                                       "cudaGraphicsGLRegisterBuffer")
        except InteropUnavailable:
            self.host.release()
            raise

    def upload(self, texture, pixels) -> None:
        if isinstance(pixels, np.ndarray) or not pixels.is_cuda:  # a host frame (a scene switch's): the host way
            self.host.upload(texture, pixels)
            return
        import torch

        rt = self.rt
        assert pixels.dtype == torch.uint8 and pixels.is_contiguous() and pixels.numel() == self.nbytes, \
            f"pixels must be {self.size[1]}x{self.size[0]}x3 uint8, contiguous; got {list(pixels.shape)}"
        with _on(pixels.device):
            stream = rt.cudaStream_t(torch.cuda.current_stream(pixels.device).cuda_stream)
            _check(rt.cudaGraphicsMapResources(1, self.resource, stream), "cudaGraphicsMapResources")
            try:
                pointer, size = _check(rt.cudaGraphicsResourceGetMappedPointer(self.resource),
                                       "cudaGraphicsResourceGetMappedPointer")
                assert size >= self.nbytes, f"the mapped buffer holds {size} bytes, the frame {self.nbytes}"
                _check(rt.cudaMemcpyAsync(pointer, pixels.data_ptr(), self.nbytes,
                                          rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync")
            finally:  # unmapping orders the copy before the GL's next use of the buffer
                _check(rt.cudaGraphicsUnmapResources(1, self.resource, stream), "cudaGraphicsUnmapResources")
        texture.write(self.host.pbo, alignment=1)  # buffer -> texture, on the GPU

    def release(self) -> None:
        self.rt.cudaGraphicsUnregisterResource(self.resource)
        self.host.release()


def _on(device):
    """torch.cuda.device(device) where torch has CUDA; elsewhere (the tests' stand-in runtime) nothing to switch."""
    import contextlib

    import torch

    return torch.cuda.device(device) if torch.cuda.is_available() else contextlib.nullcontext()


def interop_blocker(device) -> str | None:
    """Why CUDA-OpenGL interop cannot serve frames on `device` with the current GL context, None when it can be
    tried. Needs the GL context current on this thread."""
    if getattr(device, "type", str(device)) != "cuda":
        return f"the frames are made on the {getattr(device, 'type', device)}, not a CUDA device"
    try:
        from cuda.bindings import runtime as rt
    except ImportError:
        return "cuda-bindings is not installed (pip install 'masquerade[cuda]')"
    try:
        count, devices = _check(rt.cudaGLGetDevices(8, rt.cudaGLDeviceList.cudaGLDeviceListAll), "cudaGLGetDevices")
    except InteropUnavailable as e:
        return f"CUDA cannot reach the GL context's device ({e})"
    index = device.index if device.index is not None else _current_cuda()
    if index not in list(devices or [])[:count]:
        return f"the GL context is on CUDA device {list(devices or [])[:count]}, the frames on cuda:{index}"
    return None


def _current_cuda() -> int:
    import torch

    return torch.cuda.current_device()


def choose(ctx, size: tuple[int, int], device, log_it: bool = True):
    """The frame upload for frames of `size` (width, height) made on `device` (a torch.device) drawn with GL
    context `ctx` (current on this thread): CudaInterop when it works here, else HostUpload; logged in one line."""
    why = interop_blocker(device)
    if why is None:
        try:
            upload = CudaInterop(ctx, size, device)
        except InteropUnavailable as e:
            why = f"CUDA refused the GL buffer ({e})"
        else:
            renderer = ctx.info.get("GL_RENDERER", "?")
            if log_it:
                log.info("frame upload: CUDA-OpenGL interop (%s, %s), frames stay on the GPU", device, renderer)
            return upload
    if log_it:
        (log.warning if getattr(device, "type", "") == "cuda" else log.info)("frame upload: host (%s)", why)
    return HostUpload(ctx, size)
