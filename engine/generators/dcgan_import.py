"""DCGAN-style generator state dicts from the wild (Radford et al. 2016, arXiv:1511.06434), recognised by
their tensor shapes, never by their names, into `dcgan.Generator` or `tconv_stack.Generator`.

What a file tells: a run of 4-D weights `[in, out, k, k]` (ConvTranspose2d, optional bias `[out]`), some
followed by BatchNorm2d tensors (`weight`, `bias`, `running_mean`, `running_var` of `[out]`). Names only
give the order (numerically sorted, so `gen.10` follows `gen.9`, and safetensors' alphabetical order does
not matter); DataParallel's `module.` prefix and one wrapping dict (`{'state_dict': ...}`) are removed.

What it does not tell, so each known layout (`RECIPES`) supplies it from its own code:
- strides and paddings. `pytorch-examples` (pytorch/examples `dcgan/main.py`, the paper's generator):
  every kernel 4; the first layer (1, 0) makes 4x4 from z, each next one (2, 1) doubles: R = 4 * 2^(n-1).
  `deeplearning-ai-mnist` (the DeepLearning.AI GAN course's MNIST generator, which DigitDCGAN and many
  others copy: `ConvTranspose2d(c_in, c_out, kernel, stride)` without padding, kernels 3, 4, 3, 4): strides
  2, 1, 2, 2, no padding: 1 -> 3 -> 6 -> 13 -> 28, MNIST's size. With zero padding and strides in {1, 2}
  that is the only choice giving 28x28 (a last stride of 1 would need 25x25 from the third layer, more
  than it can reach; 13 then needs the third stride 2 from 6, and 6 the second stride 1 from 3).
- activations: ReLU after every hidden layer (after its BatchNorm), Tanh at the end, as in both codes.
Other kernel sequences are refused with the list of known layouts; pass `strides`/`paddings` to say them.

The PyTorch examples' `netG_epoch_N.pth` (nz=100, ngf=64, nc=3: `main.0` ... `main.12`) is exactly
`dcgan.Generator(z_dim=100, resolution=64, base_channels=64, max_channels=512)` and loads into it; any
other stack (bias, grey output, widths off DCGAN's doubling plan, other kernels) becomes `tconv-stack`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from engine.generators import tconv_stack
from engine.generators.checkpoint import CheckpointError

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
WRAPPERS = ("state_dict", "model", "generator", "netG", "G", "gen", "params", "params_ema")


class NotAStackError(CheckpointError):
    """The tensors are not a DCGAN-style transposed-conv stack (or not one whose layout is known)."""


def _radford(kernels: list[int]) -> list[tuple[int, int]] | None:
    if all(k == 4 for k in kernels):
        return [(1, 0)] + [(2, 1)] * (len(kernels) - 1)
    return None


def _deeplearning_ai_mnist(kernels: list[int]) -> list[tuple[int, int]] | None:
    return [(2, 0), (1, 0), (2, 0), (2, 0)] if kernels == [3, 4, 3, 4] else None


# layout name -> (strides and paddings for these kernels, or None when they are not this layout)
RECIPES: dict[str, Callable[[list[int]], list[tuple[int, int]] | None]] = {
    "pytorch-examples": _radford,
    "deeplearning-ai-mnist": _deeplearning_ai_mnist,
}


@dataclass
class _Conv:
    weight: torch.Tensor  # [in, out, k, k]
    bias: torch.Tensor | None = None
    norm: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Recognised:
    architecture: str  # a name in ARCHITECTURES
    config: dict
    state: dict[str, torch.Tensor]
    layout: str  # which entry of RECIPES (or "explicit")


def unwrap(obj, where: str) -> dict[str, torch.Tensor]:
    """A flat state dict from what `torch.load` gave: the dict itself, or its one wrapped state dict."""
    if isinstance(obj, dict) and obj and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = [obj[k] for k in WRAPPERS if isinstance(obj.get(k), dict)]
        if len(inner) == 1:
            obj = inner[0]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = f"dict with keys {', '.join(map(str, list(obj)[:6]))}" if isinstance(obj, dict) else type(obj).__name__
        raise NotAStackError(f"{where}: not a state dict of tensors ({kind})")
    keys = list(obj)
    if all(k.startswith("module.") for k in keys):  # saved from nn.DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _natural(name: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in name.split("."))


def parse_stack(state: dict[str, torch.Tensor], where: str) -> list[_Conv]:
    """The transposed convolutions in order, each with the BatchNorm that follows it (if any)."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        owner, _, leaf = key.rpartition(".")
        groups.setdefault(owner, {})[leaf] = value
    convs: list[_Conv] = []
    for owner in sorted(groups, key=_natural):
        t = groups[owner]
        weight = t.get("weight")
        if weight is not None and weight.ndim == 4:
            if extra := sorted(set(t) - {"weight", "bias"}):
                raise NotAStackError(f"{where}: {owner} has a 4-D weight and also {', '.join(extra)}")
            if weight.shape[2] != weight.shape[3]:
                raise NotAStackError(f"{where}: {owner}.weight {list(weight.shape)} has a non-square kernel")
            bias = t.get("bias")
            if bias is not None and bias.shape != (weight.shape[1],):
                raise NotAStackError(f"{where}: {owner}.bias {list(bias.shape)} does not fit {list(weight.shape)} "
                                     "as a transposed convolution [in, out, k, k]")
            convs.append(_Conv(weight, bias))
        elif {"running_mean", "running_var"} <= set(t) and set(t) <= set(BN_KEYS):
            if not convs or convs[-1].norm:
                raise NotAStackError(f"{where}: {owner} is a BatchNorm with no transposed convolution before it")
            channels = convs[-1].weight.shape[1]
            if "weight" not in t or "bias" not in t:
                raise NotAStackError(f"{where}: {owner} is a BatchNorm without affine weight and bias")
            for leaf in ("weight", "bias", "running_mean", "running_var"):
                if t[leaf].shape != (channels,):
                    raise NotAStackError(f"{where}: {owner}.{leaf} {list(t[leaf].shape)} does not fit the "
                                         f"{channels} channels of the convolution before it")
            convs[-1].norm = {leaf: t.get(leaf, torch.tensor(0, dtype=torch.long)) for leaf in BN_KEYS}
        else:
            shapes = ", ".join(f"{leaf} {list(v.shape)}" for leaf, v in t.items())
            raise NotAStackError(f"{where}: {owner or '(top level)'} ({shapes}) is neither a transposed "
                                 "convolution nor a BatchNorm: not a DCGAN-style transposed-conv stack")
    if not convs:
        raise NotAStackError(f"{where}: no transposed convolutions")
    for i, (a, b) in enumerate(zip(convs, convs[1:])):
        if a.weight.shape[1] != b.weight.shape[0]:
            raise NotAStackError(f"{where}: layer {i} gives {a.weight.shape[1]} channels but layer {i + 1} takes "
                                 f"{b.weight.shape[0]}: not one chain of transposed convolutions")
    if convs[-1].weight.shape[1] not in (1, 3, 4):
        raise NotAStackError(f"{where}: the last layer gives {convs[-1].weight.shape[1]} channels, not an image "
                             "(1, 3 or 4)")
    return convs


def recognise(state: dict[str, torch.Tensor], where: str, strides: list[int] | None = None,
              paddings: list[int] | None = None) -> Recognised:
    """The architecture, config and renamed state dict for a DCGAN-style state dict."""
    state = {k: v.detach().float() if v.is_floating_point() else v for k, v in state.items()}
    convs = parse_stack(state, where)
    kernels = [c.weight.shape[2] for c in convs]
    if strides is not None or paddings is not None:
        if strides is None or paddings is None or not len(strides) == len(paddings) == len(convs):
            raise NotAStackError(f"{where}: give one stride and one padding for each of the {len(convs)} layers")
        layout, plan = "explicit", list(zip(strides, paddings, strict=True))
    else:
        found = [(name, plan) for name, recipe in RECIPES.items() if (plan := recipe(kernels)) is not None]
        if not found:
            raise NotAStackError(f"{where}: a transposed-conv stack with kernels {kernels}, which no known layout "
                                 f"has ({', '.join(RECIPES)}); strides and paddings cannot be read from weights")
        layout, plan = found[0]
    layers = [tconv_stack.Layer(c.weight.shape[0], c.weight.shape[1], c.weight.shape[2], stride, padding,
                                bias=c.bias is not None, norm="batch" if c.norm else "none",
                                activation="tanh" if i == len(convs) - 1 else "relu")
              for i, (c, (stride, padding)) in enumerate(zip(convs, plan, strict=True))]
    dcgan = _as_dcgan(convs, layers)
    if layout == "pytorch-examples" and dcgan is not None:
        return Recognised("dcgan", dcgan, _dcgan_state(convs), layout)
    stack = {}
    for i, c in enumerate(convs):
        stack[f"blocks.{i}.conv.weight"] = c.weight
        if c.bias is not None:
            stack[f"blocks.{i}.conv.bias"] = c.bias
        stack.update({f"blocks.{i}.norm.{leaf}": v for leaf, v in c.norm.items()})
    config = dict(z_dim=layers[0].in_channels, layers=[layer.to_config() for layer in layers])
    return Recognised("tconv-stack", config, stack, layout)


def _as_dcgan(convs: list[_Conv], layers: list[tconv_stack.Layer]) -> dict | None:
    """dcgan.Generator's config when it is exactly this stack (its key layout is the examples'), else None."""
    widths = [c.weight.shape[1] for c in convs[:-1]]
    if (len(convs) < 2 or any(c.bias is not None for c in convs) or convs[-1].norm
            or not all(c.norm for c in convs[:-1]) or convs[-1].weight.shape[1] != 3):
        return None
    resolution = tconv_stack.output_sizes(layers)[-1]
    levels = int(math.log2(resolution))
    config = dict(z_dim=convs[0].weight.shape[0], resolution=resolution, base_channels=widths[-1],
                  max_channels=widths[0], out_channels=3)
    plan = [min(widths[-1] * 2 ** (levels - 3 - i), widths[0]) for i in range(levels - 2)]
    return config if plan == widths and 2**levels == resolution else None


def _dcgan_state(convs: list[_Conv]) -> dict[str, torch.Tensor]:
    """Keys of dcgan.Generator's `main` Sequential: conv 3j, BatchNorm 3j+1 (ReLU 3j+2 has none)."""
    out = {}
    for j, c in enumerate(convs):
        out[f"main.{3 * j}.weight"] = c.weight
        out.update({f"main.{3 * j + 1}.{leaf}": v for leaf, v in c.norm.items()})
    return out

