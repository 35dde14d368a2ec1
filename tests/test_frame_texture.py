"""The frame upload seam (engine/frame_texture.py, issue 19): the chooser takes the host upload here and says why in
one line; `--device cuda` without CUDA is one line and a CPU run; the host upload puts the generated pixels in the
texture exactly (a real EGL context, read back); interop failures at start (an old driver, a GL context on another
GPU, a buffer CUDA will not register) are one line and the host upload. No CUDA here: the interop upload itself is
checked by bench/gpu.sh on a GPU (interop pixels against host pixels)."""

import logging
import sys
import types

import numpy as np
import pytest
import torch

from engine import frame_texture
from engine.compositor import Compositor
from engine.frame import Frame, Tick, quantise, to_uint8_hwc

from .conftest import DEFAULT_SHOW, masquerade


def test_the_chooser_takes_the_host_upload_on_the_cpu_and_says_why(gl, caplog):
    with caplog.at_level(logging.INFO, logger="masquerade"):
        upload = frame_texture.choose(gl, (16, 16), torch.device("cpu"))
    try:
        assert isinstance(upload, frame_texture.HostUpload) and not upload.on_device
        lines = [r.getMessage() for r in caplog.records if "frame upload" in r.getMessage()]
        assert lines == ["frame upload: host (the frames are made on the cpu, not a CUDA device)"]
    finally:
        upload.release()


def test_the_host_upload_puts_the_generated_pixels_in_the_texture_exactly(gl):
    torch.manual_seed(1)
    image = torch.rand(1, 3, 24, 40)  # [1, 3, H, W]
    expected = to_uint8_hwc(image)
    assert np.array_equal(quantise(image).numpy(), expected)  # one quantise path: host array = device tensor
    compositor = Compositor(gl, (40, 24), (40, 24))  # the output at the frame's size: the resample is a copy
    try:
        for rgb in (expected, quantise(image)):  # a host array, and a tensor (a GPU without interop: copied)
            compositor.draw(*[Frame(Tick(0, 0.0), image, rgb)] * 2, 1.0)
            assert np.array_equal(compositor.read(), expected)
    finally:
        compositor.release()


@pytest.mark.parametrize("command", [["render", DEFAULT_SHOW, "-o", "{tmp}/frames", "--seconds", 0.2, "--fps", 10,
                                      "--size", "128x72", "-q"],
                                     ["run", DEFAULT_SHOW, "--headless", "--frames", 2, "--size", "128x72"]])
def test_device_cuda_without_cuda_is_one_line_and_a_cpu_run(tmp_path, command):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = masquerade(*[str(a).format(tmp=tmp_path) for a in command], "--device", "cuda")
    assert r.returncode == 0, r.stderr
    said = [line for line in r.stderr.splitlines() if "--device cuda" in line]
    assert len(said) == 1 and "no CUDA device is available to PyTorch here; running on the CPU" in said[0]
    assert "frame upload: host (the frames are made on the cpu, not a CUDA device)" in r.stderr
    assert "Traceback" not in r.stderr
    if command[0] == "render":
        assert len(list((tmp_path / "frames").glob("*.png"))) == 2


# --- interop failures at start, with a stand-in for cuda.bindings.runtime (there is no CUDA here) ---------------

class Enum:
    def __init__(self, **members):
        self.__dict__.update(members)


def fake_runtime(monkeypatch, gl_devices=(0,), gl_error="cudaSuccess", register_error="cudaSuccess"):
    """cuda.bindings.runtime as far as the chooser uses it: (error, *values) tuples, errors named."""
    errors = Enum(cudaSuccess="cudaSuccess")
    rt = types.SimpleNamespace(
        cudaError_t=errors,
        cudaGetErrorName=lambda e: ("cudaSuccess", e.encode()),
        cudaGLDeviceList=Enum(cudaGLDeviceListAll=1),
        cudaGraphicsRegisterFlags=Enum(cudaGraphicsRegisterFlagsWriteDiscard=2),
        cudaGLGetDevices=lambda n, which: (gl_error, len(gl_devices), list(gl_devices)),
        cudaGraphicsGLRegisterBuffer=lambda glo, flags: (register_error, object()),
        cudaGraphicsUnregisterResource=lambda resource: ("cudaSuccess",))
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    bindings.runtime, cuda.bindings = rt, bindings
    for name, module in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", rt)):
        monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.parametrize("setup, why", [
    (dict(gl_error="cudaErrorInsufficientDriver"),
     "CUDA cannot reach the GL context's device (cudaGLGetDevices: cudaErrorInsufficientDriver)"),
    (dict(gl_devices=(1,)), "the GL context is on CUDA device [1], the frames on cuda:0"),
    (dict(gl_devices=()), "the GL context is on CUDA device [], the frames on cuda:0"),  # Mesa: no CUDA device
    (dict(register_error="cudaErrorOperatingSystem"),
     "CUDA refused the GL buffer (cudaGraphicsGLRegisterBuffer: cudaErrorOperatingSystem)"),
])
def test_an_interop_failure_at_start_is_one_line_and_the_host_upload(gl, monkeypatch, caplog, setup, why):
    fake_runtime(monkeypatch, **setup)
    with caplog.at_level(logging.INFO, logger="masquerade"):
        upload = frame_texture.choose(gl, (16, 16), torch.device("cuda", 0))
    try:
        assert isinstance(upload, frame_texture.HostUpload)
        lines = [r for r in caplog.records if "frame upload" in r.getMessage()]
        assert [r.getMessage() for r in lines] == [f"frame upload: host ({why})"]
        assert lines[0].levelno == logging.WARNING  # CUDA asked for, the slower path taken: a warning
    finally:
        upload.release()


def test_without_cuda_bindings_the_reason_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)  # an import of it fails
    assert frame_texture.interop_blocker(torch.device("cuda", 0)) == \
        "cuda-bindings is not installed (pip install 'masquerade[cuda]')"


def test_interop_is_chosen_when_everything_agrees(gl, monkeypatch, caplog):
    fake_runtime(monkeypatch)
    with caplog.at_level(logging.INFO, logger="masquerade"):
        upload = frame_texture.choose(gl, (16, 16), torch.device("cuda", 0))
    try:
        assert isinstance(upload, frame_texture.CudaInterop) and upload.on_device
        assert "frame upload: CUDA-OpenGL interop (cuda:0, " in caplog.text
    finally:
        upload.release()
