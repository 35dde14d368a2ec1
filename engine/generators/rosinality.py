"""rosinality/stylegan2-pytorch checkpoints (`{'g_ema': state_dict, 'latent_avg': w, ...}`, `.pt`) into
`stylegan2.Generator` (NVlabs names), without rosinality's code.

rosinality reimplements StyleGAN2 config-f (Karras et al. 2020, arXiv:1912.04958) with its own module
tree; its numerics are NVlabs' ('skip' generator, equalized lr, [1, 3, 3, 1] FIR up-sampling), so the
conversion only renames and reshapes tensors:

  style.{i+1}.weight/bias  (EqualLinear, lr_mul 0.01)  -> mapping.fc{i}.weight/bias   (style.0 is PixelNorm)
  input.input [1, C, 4, 4]                             -> synthesis.b4.const [C, 4, 4]
  conv1 / to_rgb1                                      -> synthesis.b4.conv1 / b4.torgb
  convs.{2k} / convs.{2k+1} / to_rgbs.{k}              -> synthesis.b{8*2^k}.conv0 / conv1 / torgb
  *.conv.weight [1, O, I, k, k]                        -> *.weight [O, I, k, k]
  *.conv.modulation.weight/bias                        -> *.affine.weight/bias
  *.noise.weight [1] / *.activate.bias                 -> *.noise_strength [] / *.bias
  to_rgb*.bias [1, 3, 1, 1]                            -> *.torgb.bias [3]
  noises.noise_0, noise_{2k+1}, noise_{2k+2} [1,1,R,R] -> b4.conv1, b{R}.conv0, b{R}.conv1 .noise_const [R, R]
  latent_avg [w_dim]                                   -> mapping.w_avg
The blur kernels rosinality stores (`convs.*.conv.blur.kernel`, `to_rgbs.*.upsample.kernel`, both the
normalised outer product times 4) give `resample_filter`; its channel table (512 up to 32x32, then
`channel_multiplier` * 256 * 64 / R) is NVlabs' `min(channel_base / R, channel_max)` and is read from the
weight shapes. Up-sampling convolutions need no flip: both codes run them as a transposed convolution
of the stored kernel (rosinality's TF converter flips, as NVlabs' `legacy.py` does).

Not stored in the file, so assumed: the mapping's learning-rate multiplier (`lr_mlp`, 0.01 in every
rosinality script). rosinality's `randomize_noise=False` uses the `noises` buffers: that is
`noise_mode='const'` here. Its output is [-1, 1] like `G.synthesis`; `G(z)` gives [0, 1].
Training checkpoints (`train.py`) hold no `latent_avg`: w_avg is then estimated the way rosinality's
`generate.py` does (`mean_latent(4096)`: the mean of the mapping over 4096 z, here with seed 0).
"""

from __future__ import annotations

import re

import torch

from engine.generators import limits, stylegan2
from engine.generators.checkpoint import CheckpointError

FORMAT = "rosinality stylegan2-pytorch checkpoint"
LR_MLP = 0.01  # rosinality Generator(lr_mlp=0.01): not saved in checkpoints
W_AVG_SAMPLES = 4096


class RosinalityError(CheckpointError):
    """A rosinality checkpoint that cannot be converted; the message names the file and what is wrong."""


def is_rosinality_state(state: dict) -> bool:
    return all(isinstance(state.get(k), torch.Tensor) for k in ("input.input", "conv1.conv.weight",
                                                                 "to_rgb1.conv.weight", "style.1.weight"))


def pick_entry(obj: dict) -> str | None:
    """'g_ema' (the averaged weights rosinality samples with), else 'g'; None when neither is a generator."""
    for name in ("g_ema", "g"):
        if isinstance(obj.get(name), dict) and is_rosinality_state(obj[name]):
            return name
    return None


def _filter_taps(kernel: torch.Tensor, gain: float, where: str) -> list[float]:
    """The 1-D taps of a stored 2-D blur kernel (outer(f, f) / sum(f)^2 * gain), as small numbers."""
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise RosinalityError(f"{where}: blur kernel of shape {list(kernel.shape)} is not square")
    taps = kernel.double().sum(dim=1) / gain  # = f / sum(f)
    taps = taps / taps[taps.abs() > 1e-12].abs().min()
    rounded = taps.round()
    taps = rounded if (taps - rounded).abs().max() < 1e-4 else taps
    if (stylegan2.fir_filter(taps.tolist()).double() * gain - kernel.double()).abs().max() > 1e-5:
        raise RosinalityError(f"{where}: blur kernel is not a separable FIR filter")
    return [float(t) for t in taps]


def _channel_plan(channels: dict[int, int], where: str) -> dict:
    """channel_base, channel_max with min(base // res, max) == channels[res] for every resolution."""
    channel_max = max(channels.values())
    below = [res * c for res, c in sorted(channels.items()) if c < channel_max]
    channel_base = below[0] if below else channel_max * max(channels)
    plan = {res: min(channel_base // res, channel_max) for res in channels}
    if plan != channels:
        raise RosinalityError(f"{where}: channel widths {channels} do not follow StyleGAN2's "
                              "min(channel_base / resolution, channel_max) plan")
    return dict(channel_base=channel_base, channel_max=channel_max)


def convert_state(state: dict[str, torch.Tensor], latent_avg: torch.Tensor | None, where: str
                  ) -> tuple[dict, dict[str, torch.Tensor], str | None]:
    """rosinality g_ema state -> (stylegan2.Generator config, its state dict without the filter buffers,
    a note on w_avg or None when w_avg must be estimated)."""
    state = {k: v.detach().float() if v.is_floating_point() else v for k, v in state.items()}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise RosinalityError(f"{where}: no {key!r} in the generator's state dict")
        used.add(key)
        return state[key]

    n_mlp = len({m.group(1) for k in state if (m := re.fullmatch(r"style\.(\d+)\.weight", k))})
    n_up = len({m.group(1) for k in state if (m := re.fullmatch(r"to_rgbs\.(\d+)\.conv\.weight", k))})
    resolution = 4 * 2**n_up
    w_dim = take("style.1.weight").shape[1]
    out: dict[str, torch.Tensor] = {}
    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"] = take(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.bias"] = take(f"style.{i + 1}.bias")
    out["synthesis.b4.const"] = take("input.input")[0]
    channels = {4: out["synthesis.b4.const"].shape[0]}

    def styled_conv(src: str, dst: str, noise: str) -> None:
        weight = take(f"{src}.conv.weight")
        out[f"{dst}.weight"] = weight[0]
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.noise_strength"] = take(f"{src}.noise.weight").reshape([])
        out[f"{dst}.bias"] = take(f"{src}.activate.bias")
        out[f"{dst}.noise_const"] = take(f"noises.{noise}")[0, 0]

    def to_rgb(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = take(f"{src}.bias").flatten()

    styled_conv("conv1", "synthesis.b4.conv1", "noise_0")
    to_rgb("to_rgb1", "synthesis.b4.torgb")
    taps = None
    for k in range(n_up):
        res = 8 * 2**k
        styled_conv(f"convs.{2 * k}", f"synthesis.b{res}.conv0", f"noise_{2 * k + 1}")
        styled_conv(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", f"noise_{2 * k + 2}")
        to_rgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
        channels[res] = out[f"synthesis.b{res}.conv1.weight"].shape[0]
        for key in (f"convs.{2 * k}.conv.blur.kernel", f"to_rgbs.{k}.upsample.kernel"):
            if key in state:
                found = _filter_taps(take(key), 4.0, f"{where}: {key}")
                if taps is not None and found != taps:
                    raise RosinalityError(f"{where}: blur kernels differ between layers ({taps} and {found})")
                taps = found
    leftover = sorted(set(state) - used)
    if leftover:
        raise RosinalityError(f"{where}: tensors that rosinality's StyleGAN2 generator does not have "
                              f"(another variant, e.g. SWAGAN?): {', '.join(leftover[:5])}")
    if out["synthesis.b4.torgb.weight"].shape[0] != 3:
        raise RosinalityError(f"{where}: ToRGB gives {out['synthesis.b4.torgb.weight'].shape[0]} channels, not 3")
    synthesis_kwargs = _channel_plan(channels, where)
    if taps is not None and taps != [1.0, 3.0, 3.0, 1.0]:
        synthesis_kwargs["resample_filter"] = taps
    config = dict(z_dim=w_dim, c_dim=0, w_dim=w_dim, img_resolution=resolution, img_channels=3,
                  mapping_kwargs=dict(num_layers=n_mlp, lr_multiplier=LR_MLP), synthesis_kwargs=synthesis_kwargs)
    note = None
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() != w_dim:
            raise RosinalityError(f"{where}: latent_avg is not a [{w_dim}] tensor")
        out["mapping.w_avg"] = latent_avg.detach().float().reshape(w_dim)
        note = "latent_avg from the checkpoint"
    return config, out, note


def build(state: dict[str, torch.Tensor], latent_avg: torch.Tensor | None, where: str
          ) -> tuple[stylegan2.Generator, dict]:
    """The converted generator (eval mode, CPU) and provenance notes (how w_avg was obtained)."""
    config, weights, note = convert_state(state, latent_avg, where)
    try:
        g = limits.create("stylegan2", config, where)  # refused from the config when too large
    except (TypeError, ValueError) as e:
        raise RosinalityError(f"{where}: cannot build StyleGAN2 from {config}: {e}") from None
    own = g.state_dict()
    for key, value in own.items():  # filters are rebuilt from the config, w_avg may be estimated below
        if key not in weights and (key.endswith("resample_filter") or key == "mapping.w_avg"):
            weights[key] = value
    try:
        g.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise RosinalityError(f"{where}: weights do not fit StyleGAN2: {' '.join(str(e).split())}") from None
    g.eval().requires_grad_(False)
    if note is None:
        z = torch.randn(W_AVG_SAMPLES, g.z_dim, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            g.mapping.w_avg.copy_(g.mapping(z)[:, 0].mean(dim=0))
        note = f"estimated: mean of the mapping over {W_AVG_SAMPLES} z (seed 0), as rosinality's mean_latent"
    return g, {"w_avg": note}
