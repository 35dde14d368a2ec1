"""StyleGAN2 constructor kwargs read from foreign files: one nested layout, defaults made explicit, and
every number checked before a network is built from it.

Why a module of its own: three writers record the same network three ways. stylegan2-ada-pytorch's
`Generator(z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs)` nests the
synthesis settings (our `stylegan2.Generator` takes the same); the `networks_stylegan2.Generator` of
NVlabs' stylegan3 repository (`train.py --cfg=stylegan2`, the published `stylegan2-*.pkl`) takes them as
flat keywords (`channel_base=..., conv_clamp=...`) and has other defaults (`conv_clamp=256`,
`num_fp16_res=4`, `w_avg_beta=0.998`); TensorFlow pickles use TF names (`tf_pickle`). A file is data from
anyone: a resolution of 2**40 or a NaN clamp must be refused with a message, not allocated or computed.
"""

from __future__ import annotations

import math
import numbers

GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
                  "synthesis_kwargs")

# NVlabs/stylegan3 training/networks_stylegan2.py: SynthesisBlock(conv_clamp=256), SynthesisNetwork(
# num_fp16_res=4), MappingNetwork(w_avg_beta=0.998); stylegan2-ada-pytorch's are None, 0 and 0.995
SG3_REPO_SYNTHESIS_DEFAULTS = {"conv_clamp": 256, "num_fp16_res": 4}
SG3_REPO_MAPPING_DEFAULTS = {"w_avg_beta": 0.998}
# how NVlabs computes (grouped or plain convolution), not what: the image is the same either way
SPEED_ONLY = ("fused_modconv_default",)


def nest_flat_kwargs(config: dict) -> tuple[dict, bool]:
    """(config with `synthesis_kwargs` nested, whether it came flat). Flat keywords are the stylegan3
    repository's layout, so its defaults fill what the file leaves out; without them the clamp would
    silently drop from 256 to none."""
    flat = {k: v for k, v in config.items() if k not in GENERATOR_ARGS}
    nested = {k: v for k, v in config.items() if k in GENERATOR_ARGS}
    if not flat:
        return nested, False
    if "synthesis_kwargs" in nested:
        raise ValueError(f"both synthesis_kwargs and flat synthesis keywords ({', '.join(sorted(flat))})")
    synthesis = {k: v for k, v in flat.items() if k not in SPEED_ONLY}
    nested["synthesis_kwargs"] = {**SG3_REPO_SYNTHESIS_DEFAULTS, **synthesis}
    nested["mapping_kwargs"] = {**SG3_REPO_MAPPING_DEFAULTS, **dict(nested.get("mapping_kwargs") or {})}
    return nested, True


def _int(where: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"{where} is {value!r}: expected a whole number in {low}..{high}")


def _real(where: str, value, low: float, high: float, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        raise ValueError(f"{where} is {value!r}: expected a finite number in {low:g}..{high:g}")


def _optional_int(where: str, value, low: int, high: int) -> None:
    if value is not None:
        _int(where, value, low, high)


def check(config: dict) -> None:
    """Raise ValueError naming the first setting outside what any published StyleGAN2 uses (with room
    to spare): sizes that would exhaust memory, NaN or infinite factors, filters that sum to zero."""
    _int("z_dim", config.get("z_dim", 512), 0, 4096)
    _int("c_dim", config.get("c_dim", 0), 0, 100_000)
    _int("w_dim", config.get("w_dim", 512), 1, 4096)
    _int("img_channels", config.get("img_channels", 3), 1, 4)
    resolution = config.get("img_resolution", 1024)
    _int("img_resolution", resolution, 4, 1024)
    if resolution & (resolution - 1):
        raise ValueError(f"img_resolution is {resolution}: expected a power of two")
    if config.get("z_dim", 512) + config.get("c_dim", 0) == 0:
        raise ValueError("z_dim and c_dim are both 0: the network would have no input")
    _check_mapping(dict(config.get("mapping_kwargs") or {}))
    _check_synthesis(dict(config.get("synthesis_kwargs") or {}))


def _check_mapping(m: dict) -> None:
    _int("mapping_kwargs.num_layers", m.get("num_layers", 8), 1, 32)
    _optional_int("mapping_kwargs.embed_features", m.get("embed_features"), 1, 8192)
    _optional_int("mapping_kwargs.layer_features", m.get("layer_features"), 1, 8192)
    _real("mapping_kwargs.lr_multiplier", m.get("lr_multiplier", 0.01), 1e-6, 1e3)
    _real("mapping_kwargs.w_avg_beta", m.get("w_avg_beta", 0.995), 0.0, 1.0, allow_none=True)


def _check_synthesis(s: dict) -> None:
    _int("channel_base", s.get("channel_base", 32768), 1, 1 << 20)
    _int("channel_max", s.get("channel_max", 512), 1, 2048)
    _int("num_fp16_res", s.get("num_fp16_res", 0), 0, 32)
    _int("kernel_size", s.get("kernel_size", 3), 1, 9)
    _real("conv_clamp", s.get("conv_clamp"), 1e-6, 1e6, allow_none=True)
    taps = s.get("resample_filter", [1, 3, 3, 1])
    if not isinstance(taps, (list, tuple)) or not 1 <= len(taps) <= 16:
        raise ValueError(f"resample_filter is {taps!r}: expected a list of 1..16 taps")
    for i, tap in enumerate(taps):
        _real(f"resample_filter[{i}]", tap, -1e6, 1e6)
    if abs(sum(taps)) < 1e-6:
        raise ValueError(f"resample_filter {list(taps)} sums to zero: it cannot be normalised")
    for key in ("architecture", "activation"):
        if key in s and not isinstance(s[key], str):
            raise ValueError(f"{key} is {s[key]!r}: expected a name")
