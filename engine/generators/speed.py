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

`accelerate` wraps the module's own `forward` / `render` in place, so the styler, the pipeline and the
tests call it exactly as before. `bench/generators.py` measures each option against the eager fp32
module in one run; docs/performance.md keeps the figures.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


class SpeedError(ValueError):
    pass


@dataclass(frozen=True)
class Speed:
    precision: str = "fp32"  # "fp32", "fp16", "bf16" or "auto" (fp16 on CUDA, fp32 on CPU)
    compile: bool = False
    cuda_graphs: bool = False  # only with compile, only on CUDA

    def resolved(self, device: torch.device) -> Speed:
        precision = self.precision
        if precision == "auto":
            precision = "fp16" if device.type == "cuda" else "fp32"
        if precision not in PRECISIONS:
            raise SpeedError(f"precision must be auto, fp32, fp16 or bf16, got {self.precision!r}")
        if precision == "fp16" and device.type != "cuda":
            raise SpeedError("precision fp16 needs a CUDA device (on CPU, fp16 is emulated and slow: use bf16)")
        if self.cuda_graphs and (device.type != "cuda" or not self.compile):
            raise SpeedError("cuda_graphs needs compile = true and a CUDA device")
        return Speed(precision, self.compile, self.cuda_graphs)


def _autocast(fn, device_type: str, dtype):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            out = fn(*args, **kwargs)
        return out.float()

    return run


def accelerate(generator: torch.nn.Module, device: torch.device, speed: Speed) -> torch.nn.Module:
    """Wrap `generator`'s image-making method (`render` for StyleGAN models, else `forward`) with the
    chosen precision and compilation. Returns the same module."""
    speed = speed.resolved(device)
    dtype = PRECISIONS[speed.precision]
    name = "render" if hasattr(generator, "render") else "forward"
    fn = getattr(generator, name)
    if speed.compile:
        fn = torch.compile(fn, mode="reduce-overhead" if speed.cuda_graphs else None, dynamic=False)
    if dtype is not None:
        fn = _autocast(fn, device.type, dtype)
    if fn is not getattr(generator, name):
        setattr(generator, name, fn)  # an instance attribute: nn.Module.__call__ finds it first
    generator.speed = speed
    return generator
