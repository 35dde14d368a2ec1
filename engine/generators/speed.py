"""Making a loaded generator faster without changing what it computes (beyond rounding).

- Precision: autocast to fp16 (CUDA) or bf16 (CUDA, and CPUs with fast bf16) for the synthesis;
  the mapping network and the output stay float32, so truncation and the [0, 1] image are exact in
  form. NVlabs trained StyleGAN2/3 with fp16 in their highest-resolution layers, so fp16 there is
  what the networks were made for; their `conv_clamp` (kept by our modules) guards against overflow.
- `torch.compile`: fuses the small elementwise ops between convolutions (bias, leaky ReLU, noise,
  demodulation), which dominate at small resolutions; `cuda_graphs` (compile mode "reduce-overhead")
  also removes the per-kernel launch cost, the main cost of batch-1 frames on a GPU.

These are options on top of the default path: with autograd off, StyleGAN2/3 layers already run their
inference kernels (`stylegan2.modulated_conv2d_inference`, `stylegan3.filtered_lrelu_inference`: fused or
per-sample modulation by layer shape, channels-last on the CPU, in-place epilogues, polyphase resampling),
the same image as the reference ops to 1e-5 (issue 20). bf16 stays opt-in: without AMX it is slower on a
CPU and moves pixels by more than 1/255.

`[model] compile = "auto"` (the default) compiles where it was measured to pay (a generator class's
`compile_pays_on`: StyleGAN2/3 on the CPU, given a C++ compiler), and only in live shows: the eager model
draws the first frames while `Compiled.start` builds the compiled one in a background thread, which takes
over once it has made a frame equal to the eager one within 1e-4; a failure there is one log line and the
show stays eager. Lockstep runs and renders stay eager (their frames are compared byte for byte, and
compiled kernels may round a pixel differently); `compile = true` compiles them too, before their first
frame. What inductor builds is kept in the user's cache folder (`cache_dir`), so only a model's first
run compiles (2-7 minutes for a 256 px StyleGAN on a shared 2-core CPU; 9-36 s from the cache).

`accelerate` wraps the module's own `forward` / `render` in place, so the styler, the pipeline and the
tests call it exactly as before. `bench/generators.py` measures each option against the eager fp32
module in one run; docs/performance.md keeps the figures.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
SAME = 1e-4  # the largest pixel difference (0..1) a compiled frame may have from the eager one
_USER_CACHE = os.environ.get("TORCHINDUCTOR_CACHE_DIR")  # set by the user before Masquerade started
# background compiles run one at a time: a show with scenes, or a kiosk switch, may start several, and each
# wants both cores for minutes (the eager models draw meanwhile)
_BACKGROUND = threading.Lock()


class SpeedError(ValueError):
    pass


@dataclass(frozen=True)
class Speed:
    precision: str = "fp32"  # "fp32", "fp16", "bf16" or "auto" (fp16 on CUDA, fp32 on CPU)
    compile: bool | str = False  # True, False or "auto" (live shows, where it pays: module docstring)
    cuda_graphs: bool = False  # only with compile, only on CUDA

    def resolved(self, device: torch.device) -> Speed:
        precision = self.precision
        if precision == "auto":
            precision = "fp16" if device.type == "cuda" else "fp32"
        if precision not in PRECISIONS:
            raise SpeedError(f"precision must be auto, fp32, fp16 or bf16, got {self.precision!r}")
        if precision == "fp16" and device.type != "cuda":
            raise SpeedError("precision fp16 needs a CUDA device (on CPU, fp16 is emulated and slow: use bf16)")
        if not (isinstance(self.compile, bool) or self.compile == "auto"):
            raise SpeedError(f"compile must be true, false or \"auto\", got {self.compile!r}")
        if self.cuda_graphs and (device.type != "cuda" or self.compile is not True):
            raise SpeedError("cuda_graphs needs compile = true and a CUDA device")
        return Speed(precision, self.compile, self.cuda_graphs)


def cache_dir() -> Path:
    """Where inductor keeps what it compiled: $TORCHINDUCTOR_CACHE_DIR as the user set it, else
    `masquerade/inductor` in the user's cache folder ($XDG_CACHE_HOME, else ~/.cache)."""
    if _USER_CACHE:
        return Path(_USER_CACHE)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "masquerade" / "inductor"


def compile_pays(generator: torch.nn.Module, device: torch.device) -> bool:
    """Whether `compile = "auto"` compiles this model here: its class measured a gain on this kind of
    device (`compile_pays_on`), and on the CPU there is a C++ compiler for inductor's kernels."""
    if device.type not in getattr(generator, "compile_pays_on", ()):
        return False
    return device.type != "cpu" or shutil.which(os.environ.get("CXX", "g++")) is not None


def compile_function(fn, mode: str | None = None):
    """`torch.compile(fn)` with its cache in `cache_dir()` (set before inductor first reads it). A test
    hook: tests replace it to make a compile slow or fail on purpose."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir())
    return torch.compile(fn, mode=mode, dynamic=False)


def frozen_weights():
    """Inductor's `freezing` while a generator compiles: its weights and buffers become constants, so what
    depends on them alone is computed once (the demodulation's squared-weight sums, the noise images times
    their strengths) and oneDNN gets its convolution weights pre-packed in its blocked layout instead of
    reordering them on every call. StyleGAN2-256 at batch 1 on this CPU: 1.3x over the compiled model
    without it (docs/performance.md). Inference only: a model whose weights change after it compiled would
    keep drawing with the old ones, and none does (a show's models are loaded once; a new one compiles
    anew). `torch.compile(options={"freezing": True})` does not reach the setting in torch 2.13, hence
    the patch around the compiling call."""
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}"


class Compiled:
    """A generator method that is eager until its compiled form has shown it makes the same frame.

    `start()` (live shows) compiles in a background thread on the next call's inputs while calls keep
    running eager; without `start`, `wait=True` compiles on the first call (lockstep runs, renders) and
    `wait=False` stays eager. The compiled form takes over only after matching the eager frame within
    `SAME`; any failure (no compiler, an op inductor cannot build, a mismatch) logs one line and leaves
    the eager form in place for good."""

    def __init__(self, eager, mode: str | None = None, wait: bool = False):
        self.eager, self.mode, self.wait = eager, mode, wait
        self.state = "eager"  # "eager", "warming", "compiled", "failed" or "cancelled"
        self._background = False
        self._cancelled = False
        self._thread: threading.Thread | None = None
        self._fn = None  # the compiled function, once it has matched the eager one
        self._done = threading.Event()  # set when the state is final: compiled or failed

    @property
    def ready(self) -> bool:
        return self.state == "compiled"

    def start(self) -> None:
        """Compile in the background from the next call on (which, like those until it is ready, runs eager).
        Not with CUDA graphs: they are recorded on the thread that replays them, so those compile on the
        first call."""
        self._background = self.mode is None

    def cancel(self) -> None:
        """The model is no longer played (a kiosk switched to another show): a background compile that has not
        begun is skipped (one already running finishes; torch.compile cannot be interrupted), and the model stays
        eager. Without it, a playlist of StyleGAN shows would queue minutes of compiles for models long gone."""
        self._cancelled, self._background = True, False
        if self.state == "eager":
            self.state = "cancelled"
            self._done.set()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the warm-up to end; True if it has (compiled or failed)."""
        return self._done.wait(timeout)

    def __call__(self, *args, **kwargs):
        fn = self._fn
        if fn is not None:
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # e.g. new shapes that fail to compile: eager from now on
                self._fail(f"torch.compile: the compiled model failed ({_one_line(e)}); the model runs eager")
        elif self.state == "eager" and (self._background or self.wait):
            self.state = "warming"
            if not self._background:  # lockstep: every frame from the one path, so compile now
                return self._warm(args, kwargs, None)
            out = self.eager(*args, **kwargs)
            modes = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
            copy = [_clone(a) for a in args], {k: _clone(v) for k, v in kwargs.items()}
            self._thread = threading.Thread(target=self._warm_in_background, args=(*copy, out.clone(), modes),
                                            name="masquerade-compile", daemon=True)
            self._thread.start()
            return out
        return self.eager(*args, **kwargs)

    def _warm_in_background(self, args, kwargs, expected, modes) -> None:
        try:  # the compile gives way to the frames on screen (Linux: nice is per thread; its workers inherit it)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (OSError, AttributeError):
            pass
        grad, inference = modes
        with _BACKGROUND, torch.inference_mode(inference), torch.set_grad_enabled(grad):
            if self._cancelled:  # dropped while another model compiled: nothing to compile for
                self.state = "cancelled"
                self._done.set()
                return
            self._warm(args, kwargs, expected)

    def _warm(self, args, kwargs, expected):
        """Compile, run once, compare with the eager frame; returns the frame (the eager one on failure)."""
        try:
            compiled = compile_function(self.eager, self.mode)
            with frozen_weights():  # the first call is the one that compiles
                out = compiled(*args, **kwargs)
            if expected is None:
                expected = self.eager(*args, **kwargs)
            diff = (out.float() - expected.float()).abs().max().item()
            if not diff <= SAME:
                raise RuntimeError(f"its frame differs from the eager one by {diff:.2e} (> {SAME})")
        except Exception as e:
            self._fail(f"torch.compile failed ({_one_line(e)}); the model stays eager")
            return expected if expected is not None else self.eager(*args, **kwargs)
        self._fn, self.state = compiled, "compiled"
        self._done.set()
        log.info("the compiled model is ready (cache: %s)", cache_dir())
        return out

    def _fail(self, message: str) -> None:
        self._fn, self.state = None, "failed"
        self._done.set()
        log.warning("%s", message)


def _clone(value):
    return value.clone() if isinstance(value, torch.Tensor) else value


def _autocast(fn, device_type: str, dtype):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            out = fn(*args, **kwargs)
        return out.float()

    return run


def accelerate(generator: torch.nn.Module, device: torch.device, speed: Speed) -> torch.nn.Module:
    """Wrap `generator`'s image-making method (`render` for StyleGAN models, else `forward`) with the
    chosen precision and compilation. Returns the same module; `generator.compiled` is the `Compiled`
    wrapper (None when nothing compiles), whose `start()` a live show calls."""
    speed = speed.resolved(device)
    dtype = PRECISIONS[speed.precision]
    name = "render" if hasattr(generator, "render") else "forward"
    fn = original = getattr(generator, name)
    if dtype is not None:
        fn = _autocast(fn, device.type, dtype)
    compiled = None
    if speed.compile is True or (speed.compile == "auto" and compile_pays(generator, device)):
        fn = compiled = Compiled(fn, "reduce-overhead" if speed.cuda_graphs else None, wait=speed.compile is True)
    if fn is not original:
        setattr(generator, name, fn)  # an instance attribute: nn.Module.__call__ finds it first
    generator.speed, generator.compiled = speed, compiled
    return generator
