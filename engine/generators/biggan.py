"""BigGAN-deep generator (Brock et al. 2019, "Large Scale GAN Training for High Fidelity Natural Image
Synthesis", arXiv:1809.11096), class-conditional on the 1000 ImageNet classes, at 128, 256 or 512 px.

Weight format: the `pytorch-pretrained-biggan` layout, a folder (or a pair of files side by side) holding
`config.json` (BigGANConfig: output_dim, z_dim, channel_width, num_classes, layers, attention_layer_position,
eps, n_stats) and `pytorch_model.bin` (a torch state dict). That package ports DeepMind's TF-Hub
BigGAN-deep modules; this file is the same computation in plain PyTorch, written here:

  c [B, 1000] --embeddings (linear)--> e [B, z_dim];  cond = [z, e]  [B, 2 z_dim]
  cond --gen_z (linear)--> [B, 16 ch, 4, 4] --> bottleneck blocks (BN-ReLU-1x1, BN-ReLU-up-3x3, BN-ReLU-3x3,
  BN-ReLU-1x1; every BN conditional on cond; skip: drop half the channels, nearest up-sampling),
  self-attention before block `attention_layer_position` --> BN, ReLU, 3x3 conv, first 3 channels, tanh.

The state dict keeps the package's names. Its layers are spectrally normalised (`weight_orig`, `weight_u`,
`weight_v`; files from torch < 1.1 hold `weight`, `weight_orig`, `weight_u`); in eval mode that is a fixed
division by sigma = u . (W v), so `convert_state` folds it into plain weights once, at load time.

Truncation, as the package's `truncated_noise_sample(truncation=psi)` and `model(z, c, truncation=psi)`:
z is drawn from a normal truncated to [-2, 2] and scaled by psi, and psi picks the batch-norm statistics
("standing stats") measured at that truncation (`n_stats` of them, for psi = 0, 1/(n_stats-1), ... 1).
A walk hands over z ~ N(0, 1); `forward` maps it through the normal CDF onto the truncated normal (same
distribution, smooth in z, so walks stay smooth), then scales by psi. Between two measured psi the
statistics are interpolated linearly. The package weights the two the other way round (stats[i] * frac +
stats[i+1] * (1 - frac)), which jumps at every measured psi as a fader moves; both agree on the measured
psi and half-way between them.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.generators.checkpoint import CheckpointError

CLASS_NAMES_FILE = Path(__file__).with_name("imagenet_classes.txt")
TRUNCATION_BOUND = 2.0  # truncated_noise_sample: scipy truncnorm(-2, 2)
MAX = dict(z_dim=1024, num_classes=100_000, channel_width=1024, layers=32, multiplier=64, output_dim=2048,
           n_stats=1024)

DEFAULT_LAYERS = [[False, 16, 16], [True, 16, 16], [False, 16, 16], [True, 16, 8], [False, 8, 8],
                  [True, 8, 4], [False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]]  # the 128 px model


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index order (data/imagenet_classes.txt, one per line)."""
    names = tuple(CLASS_NAMES_FILE.read_text(encoding="utf-8").splitlines())
    assert len(names) == 1000, f"{CLASS_NAMES_FILE}: {len(names)} names, expected 1000"
    return names


def _int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer {lo}..{hi}, got {value!r}")
    return value


def check_config(output_dim, z_dim, class_embed_dim, channel_width, num_classes, layers,
                 attention_layer_position, eps, n_stats) -> list[tuple[bool, int, int]]:
    """Every number from a config.json is checked before anything is built; returns the layers as tuples."""
    _int("z_dim", z_dim, 1, MAX["z_dim"])
    _int("class_embed_dim", class_embed_dim, 1, MAX["z_dim"])
    _int("num_classes", num_classes, 1, MAX["num_classes"])
    _int("channel_width", channel_width, 1, MAX["channel_width"])
    _int("n_stats", n_stats, 2, MAX["n_stats"])
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not (math.isfinite(eps) and 0 < eps < 1):
        raise ValueError(f"eps must be a number in (0, 1), got {eps!r}")
    if not isinstance(layers, list | tuple) or not 1 <= len(layers) <= MAX["layers"]:
        raise ValueError(f"layers must be a list of 1..{MAX['layers']} [up_sample, in, out] triples")
    out: list[tuple[bool, int, int]] = []
    for i, layer in enumerate(layers):
        if not (isinstance(layer, list | tuple) and len(layer) == 3 and isinstance(layer[0], bool)):
            raise ValueError(f"layers[{i}] must be [up_sample (bool), in, out], got {layer!r}")
        up, c_in, c_out = layer[0], _int(f"layers[{i}] in", layer[1], 1, MAX["multiplier"]), \
            _int(f"layers[{i}] out", layer[2], 1, MAX["multiplier"])
        if c_in != c_out and c_in != 2 * c_out:
            raise ValueError(f"layers[{i}]: a block keeps its width or halves it, got {c_in} -> {c_out}")
        if (channel_width * c_in) % 4:
            raise ValueError(f"layers[{i}]: channel_width * in must be divisible by 4 (the bottleneck)")
        out.append((up, c_in, c_out))
    if out[0][1] != 16:
        raise ValueError(f"layers[0] in must be 16 (gen_z gives 16 * channel_width channels), got {out[0][1]}")
    for i, (a, b) in enumerate(zip(out, out[1:]), 1):
        if a[2] != b[1]:
            raise ValueError(f"layers[{i}] in ({b[1]}) differs from layers[{i - 1}] out ({a[2]})")
    if out[-1][2] != 1:
        raise ValueError(f"the last layer's out must be 1 (channel_width channels), got {out[-1][2]}")
    if channel_width < 3:
        raise ValueError(f"channel_width must be >= 3 (the image is its first 3 channels), got {channel_width}")
    ups = sum(up for up, _, _ in out)
    _int("output_dim", output_dim, 4, MAX["output_dim"])
    if output_dim != 4 * 2**ups:
        raise ValueError(f"output_dim {output_dim} does not match the {ups} up-sampling layers (4 * 2^{ups})")
    _int("attention_layer_position", attention_layer_position, -1, 10**6)  # out of range: no attention
    if 0 <= attention_layer_position < len(out):
        width = channel_width * out[attention_layer_position][1]
        side = 4 * 2 ** sum(up for up, _, _ in out[:attention_layer_position])
        if width % 8:
            raise ValueError(f"the attention layer's width ({width}) must be divisible by 8")
        if side < 2:
            raise ValueError("the attention layer needs at least 2x2 pixels")
    return out


class StandingBatchNorm(nn.Module):
    """Batch norm with statistics measured per truncation (`running_means`/`running_vars` [n_stats, C]),
    conditional (gain 1 + scale(cond), bias offset(cond)) or with a plain weight and bias."""

    def __init__(self, num_features: int, cond_dim: int | None, n_stats: int, eps: float):
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        if cond_dim is not None:
            self.scale = nn.Linear(cond_dim, num_features, bias=False)
            self.offset = nn.Linear(cond_dim, num_features, bias=False)
        else:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))

    def stats(self, psi: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, var) [C] at truncation psi: linear between the two nearest measured truncations."""
        n = self.running_means.shape[0]
        pos = min(max(psi, 0.0), 1.0) * (n - 1)
        i = min(int(pos), n - 2)
        frac = pos - i
        if frac == 0:
            return self.running_means[i], self.running_vars[i]
        return (torch.lerp(self.running_means[i], self.running_means[i + 1], frac),
                torch.lerp(self.running_vars[i], self.running_vars[i + 1], frac))

    def forward(self, x: torch.Tensor, psi: float, cond: torch.Tensor | None = None) -> torch.Tensor:
        mean, var = self.stats(psi)
        if cond is None:
            return F.batch_norm(x, mean, var, self.weight, self.bias, training=False, momentum=0.0, eps=self.eps)
        weight = 1 + self.scale(cond)[:, :, None, None]
        bias = self.offset(cond)[:, :, None, None]
        return (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps) * weight + bias


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019, arXiv:1805.08318); keys and values max-pooled 2x2."""

    def __init__(self, channels: int):
        super().__init__()
        self.snconv1x1_theta = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.snconv1x1_phi = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.snconv1x1_g = nn.Conv2d(channels, channels // 2, 1, bias=False)
        self.snconv1x1_o_conv = nn.Conv2d(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, ch, h, w = x.shape
        theta = self.snconv1x1_theta(x).view(b, ch // 8, h * w)  # [B, C/8, HW]
        phi = F.max_pool2d(self.snconv1x1_phi(x), 2).view(b, ch // 8, h * w // 4)  # [B, C/8, HW/4]
        attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # [B, HW, HW/4]
        g = F.max_pool2d(self.snconv1x1_g(x), 2).view(b, ch // 2, h * w // 4)
        out = (g @ attn.transpose(1, 2)).view(b, ch // 2, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(out)


class Block(nn.Module):
    """BigGAN-deep's bottleneck residual block (widths in -> in/4 -> in/4 -> out)."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, up: bool, n_stats: int, eps: float):
        super().__init__()
        mid = c_in // 4
        self.up = up
        self.bn_0 = StandingBatchNorm(c_in, cond_dim, n_stats, eps)
        self.conv_0 = nn.Conv2d(c_in, mid, 1)
        self.bn_1 = StandingBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_1 = nn.Conv2d(mid, mid, 3, padding=1)
        self.bn_2 = StandingBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_2 = nn.Conv2d(mid, mid, 3, padding=1)
        self.bn_3 = StandingBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_3 = nn.Conv2d(mid, c_out, 1)
        self.c_out = c_out

    def forward(self, x: torch.Tensor, cond: torch.Tensor, psi: float) -> torch.Tensor:
        h = self.conv_0(F.relu(self.bn_0(x, psi, cond)))
        h = F.relu(self.bn_1(h, psi, cond))
        if self.up:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv_1(h)
        h = self.conv_2(F.relu(self.bn_2(h, psi, cond)))
        h = self.conv_3(F.relu(self.bn_3(h, psi, cond)))
        skip = x[:, :self.c_out]
        if self.up:
            skip = F.interpolate(skip, scale_factor=2, mode="nearest")
        return h + skip


class Synthesis(nn.Module):
    def __init__(self, z_dim: int, ch: int, layers: list[tuple[bool, int, int]], attention_layer_position: int,
                 n_stats: int, eps: float):
        super().__init__()
        cond_dim = 2 * z_dim
        self.ch = ch
        self.gen_z = nn.Linear(cond_dim, 4 * 4 * 16 * ch)
        blocks: list[nn.Module] = []
        for i, (up, c_in, c_out) in enumerate(layers):
            if i == attention_layer_position:
                blocks.append(SelfAttention(ch * c_in))
            blocks.append(Block(ch * c_in, ch * c_out, cond_dim, up, n_stats, eps))
        self.layers = nn.ModuleList(blocks)
        self.bn = StandingBatchNorm(ch, None, n_stats, eps)
        self.conv_to_rgb = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, cond: torch.Tensor, psi: float) -> torch.Tensor:
        x = self.gen_z(cond).view(-1, 4, 4, 16 * self.ch).permute(0, 3, 1, 2)  # TF's NHWC -> [B, 16ch, 4, 4]
        for layer in self.layers:
            x = layer(x, cond, psi) if isinstance(layer, Block) else layer(x)
        x = self.conv_to_rgb(F.relu(self.bn(x, psi)))
        return torch.tanh(x[:, :3])


class Generator(nn.Module):
    """z [B, z_dim] (N(0, 1), from a walk) and class vector c [B, num_classes] -> image [B, 3, R, R] in [0, 1].

    `c` is a one-hot, or any mix of classes (the embedding is linear, so a mix of one-hots is a mix of class
    embeddings: how class walks and the `style.class` fader pass between classes)."""

    def __init__(self, output_dim: int = 128, z_dim: int = 128, class_embed_dim: int = 128, channel_width: int = 128,
                 num_classes: int = 1000, layers: list | None = None, attention_layer_position: int = 8,
                 eps: float = 1e-4, n_stats: int = 51):
        super().__init__()
        layers = [list(x) for x in (DEFAULT_LAYERS if layers is None else layers)]
        checked = check_config(output_dim, z_dim, class_embed_dim, channel_width, num_classes, layers,
                               attention_layer_position, eps, n_stats)
        self.config = dict(output_dim=output_dim, z_dim=z_dim, class_embed_dim=class_embed_dim,
                           channel_width=channel_width, num_classes=num_classes, layers=layers,
                           attention_layer_position=attention_layer_position, eps=eps, n_stats=n_stats)
        self.z_dim, self.c_dim, self.resolution, self.img_channels = z_dim, num_classes, output_dim, 3
        self.embeddings = nn.Linear(num_classes, z_dim, bias=False)  # the package's: z_dim wide, not class_embed_dim
        self.generator = Synthesis(z_dim, channel_width, checked, attention_layer_position, n_stats, eps)

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """ImageNet's names for a 1000-class model (what BigGAN was trained on), else None."""
        return imagenet_class_names() if self.c_dim == 1000 else None

    def synthesize(self, z: torch.Tensor, c: torch.Tensor, truncation: float) -> torch.Tensor:
        """The package's `BigGAN.forward(z, class_label, truncation)`: z already truncated and scaled,
        [B, z_dim]; c [B, num_classes] -> [B, 3, R, R] in [-1, 1]."""
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [B, {self.z_dim}], got {list(z.shape)}"
        assert c.ndim == 2 and c.shape == (z.shape[0], self.c_dim), \
            f"c must be [{z.shape[0]}, {self.c_dim}], got {list(c.shape)}"
        return self.generator(torch.cat([z, self.embeddings(c)], dim=1), truncation)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0) -> torch.Tensor:
        if c is None:
            raise ValueError(f"BigGAN is conditional: pass a class vector c of shape [B, {self.c_dim}]")
        psi = min(max(float(truncation_psi), 0.0), 1.0)
        if c.shape[0] == 1 and z.shape[0] > 1:
            c = c.expand(z.shape[0], -1)
        x = self.synthesize(truncated_normal(z) * psi, c.to(z.dtype), psi)
        return (x + 1) * 0.5


def truncated_normal(z: torch.Tensor, bound: float = TRUNCATION_BOUND) -> torch.Tensor:
    """N(0, 1) samples -> samples of N(0, 1) truncated to [-bound, bound], elementwise and monotone:
    u = Phi(z) -> Phi^-1(Phi(-b) + u (Phi(b) - Phi(-b))). Computed in float64 for the tails."""
    lo = torch.special.ndtr(torch.tensor(-bound, dtype=torch.float64))
    u = torch.special.ndtr(z.double())
    return torch.special.ndtri(lo + u * (1 - 2 * lo)).to(z.dtype)


# ---------------------------------------------------------------- the package's state dict -> ours


def _sigma(prefix: str, state: dict, where: str) -> torch.Tensor:
    """The spectral-norm divisor of one layer, as torch.nn.utils.spectral_norm computes it in eval mode."""
    w = state[prefix + "weight_orig"].double()
    mat = w.reshape(w.shape[0], -1)
    if prefix + "weight_v" in state and prefix + "weight_u" in state:
        u, v = state[prefix + "weight_u"].double(), state[prefix + "weight_v"].double()
        if u.shape != (mat.shape[0],) or v.shape != (mat.shape[1],):
            raise ValueError(f"{where}: {prefix}weight_u/_v do not fit {prefix}weight_orig {list(w.shape)}")
        return u @ (mat @ v)
    if prefix + "weight" in state:  # torch < 1.1 files: W / sigma stored; torch recovers sigma as mean(W_orig / W)
        plain = state[prefix + "weight"].double()
        if plain.shape != w.shape:
            raise ValueError(f"{where}: {prefix}weight and {prefix}weight_orig differ in shape")
        return (w * plain).sum() / (plain * plain).sum()
    raise ValueError(f"{where}: {prefix}weight_orig without weight_u/weight_v (or weight): not spectral-norm state")


def convert_state(state: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """The package's state dict (spectral-norm triples) -> ours (plain weights); other tensors unchanged."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{where}: {key} is not a tensor")
        if key.endswith(("weight_u", "weight_v")):
            continue
        if key.endswith("weight_orig"):
            prefix = key[: -len("weight_orig")]
            sigma = _sigma(prefix, state, where)
            if not (torch.isfinite(sigma) and sigma.abs() > 1e-12):
                raise ValueError(f"{where}: {key}: spectral norm sigma is {float(sigma)}")
            out[prefix + "weight"] = (value.double() / sigma).float()
        elif key.endswith("weight") and key + "_orig" in state:
            continue  # torch < 1.1 kept W / sigma beside weight_orig: folded above
        else:
            out[key] = value.float() if value.is_floating_point() else value
    for key, value in out.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"{where}: {key} holds NaN or infinite values")
    return out


def is_biggan_state(obj) -> bool:
    """The package's key layout: a class embedding and the generator's first linear layer."""
    return (isinstance(obj, dict) and isinstance(obj.get("embeddings.weight"), torch.Tensor)
            and any(isinstance(obj.get(f"generator.gen_z.{k}"), torch.Tensor) for k in ("weight_orig", "weight"))
            and isinstance(obj.get("generator.bn.running_means"), torch.Tensor))


# ---------------------------------------------------------------- files: a folder, or the .bin with config.json

CONFIG_NAME, WEIGHTS_NAME = "config.json", "pytorch_model.bin"
CONFIG_KEYS = ("output_dim", "z_dim", "class_embed_dim", "channel_width", "num_classes", "layers",
               "attention_layer_position", "eps", "n_stats")
MAX_CONFIG_BYTES = 1 << 16


class BigGANError(CheckpointError):
    """A BigGAN folder or file that cannot be used; the message names the file and what is wrong."""


def files(path: Path) -> tuple[Path, Path]:
    """(config.json, weights) for a folder holding both, or for the weights file with config.json beside it."""
    folder = path if path.is_dir() else path.parent
    weights = folder / WEIGHTS_NAME if path.is_dir() else path
    config = folder / CONFIG_NAME
    if path.is_dir() and not weights.is_file():
        raise BigGANError(f"{path}: a folder without {WEIGHTS_NAME} (a BigGAN folder holds {CONFIG_NAME} "
                          f"and {WEIGHTS_NAME})")
    if not config.is_file():
        raise BigGANError(f"{weights}: a BigGAN state dict (pytorch-pretrained-biggan layout) needs its "
                          f"{CONFIG_NAME} beside it; {config} is missing")
    return config, weights


def read_config(config: Path) -> tuple[dict, list[str]]:
    """config.json -> (our constructor arguments, the keys it held that are not read)."""
    if config.stat().st_size > MAX_CONFIG_BYTES:
        raise BigGANError(f"{config}: {config.stat().st_size} bytes, too large for a BigGAN config")
    try:
        raw = json.loads(config.read_text(encoding="utf-8"), parse_constant=lambda c: float("nan"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BigGANError(f"{config}: not valid JSON ({' '.join(str(e).split())})") from None
    if not isinstance(raw, dict):
        raise BigGANError(f"{config}: expected a JSON object of BigGANConfig fields")
    args = {k: raw[k] for k in CONFIG_KEYS if k in raw}
    try:
        check_config(**{**_defaults(), **args})
    except ValueError as e:
        raise BigGANError(f"{config}: {e}") from None
    return args, sorted(set(raw) - set(CONFIG_KEYS))


def _defaults() -> dict:
    return dict(output_dim=128, z_dim=128, class_embed_dim=128, channel_width=128, num_classes=1000,
                layers=[list(x) for x in DEFAULT_LAYERS], attention_layer_position=8, eps=1e-4, n_stats=51)


def build(state: dict, weights: Path) -> tuple[Generator, dict]:
    """The package's state dict (read with weights_only=True) and the config.json beside `weights` ->
    our generator (eval, CPU) and provenance notes. Shapes are compared on the meta device first, so a
    config that does not fit the weights allocates nothing."""
    config_path, _ = files(weights)
    args, ignored = read_config(config_path)
    config = {**_defaults(), **args}
    try:
        ours = convert_state(state, str(weights))
    except ValueError as e:
        raise BigGANError(str(e)) from None
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in Generator(**config).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in ours.items()}
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        what = f"no {missing[0]}" if missing else f"an unexpected {extra[0]}"
        raise BigGANError(f"{weights}: does not fit {config_path.name} ({what}; {len(missing)} missing, "
                          f"{len(extra)} unexpected tensors)")
    for key, shape in expected.items():
        if found[key] != shape:
            raise BigGANError(f"{weights}: {key} has shape {list(found[key])}, "
                              f"{config_path.name} implies {list(shape)}")
    g = Generator(**config)
    g.load_state_dict(ours, strict=True)
    notes = {"config_file": config_path.name, "truncation": "z truncated to [-2, 2] and scaled by psi; psi picks "
             "the standing batch-norm statistics", "classes": "ImageNet-1k" if config["num_classes"] == 1000
             else f"{config['num_classes']} (no names)"}
    if ignored:
        notes["config_ignored"] = ignored
    return g.eval().requires_grad_(False), notes
