"""The networks a training run starts from: fresh ones, or a model file to fine-tune (transfer learning,
as in the seed artists' runs on top of a pretrained StyleGAN2).

`--from MODEL` takes anything `engine.generators.importers` reads (our `.safetensors`, an NVlabs
`.pkl`, a rosinality `.pt`, a DCGAN `.pth`). Its discriminator comes along when a Masquerade model file
of one lies beside it (`NAME-discriminator.safetensors` next to `NAME.safetensors`, or a run's
`discriminator-TAG.safetensors` next to `generator-TAG.safetensors`); otherwise D starts fresh, which
works but costs the first few hundred steps while D catches up.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from engine import generators
from engine.errors import MasqueradeError
from engine.generators import checkpoint
from engine.generators.checkpoint import CheckpointError
from engine.training.fastgan_discriminator import Discriminator as FastGANDiscriminator
from engine.training.sg2_discriminator import Discriminator as SG2Discriminator

log = logging.getLogger(__name__)

ARCHS = ("dcgan", "stylegan2", "lightweight-gan")
D_ARCH = {"dcgan": "dcgan-discriminator", "stylegan2": "stylegan2-discriminator",
          "lightweight-gan": "lightweight-gan-discriminator"}
TRAINING_ONLY_D = {"stylegan2-discriminator": SG2Discriminator,  # ours, trained here; not in the live registry
                   "lightweight-gan-discriminator": FastGANDiscriminator}


@dataclass
class Nets:
    arch: str  # the generator's registry name: one of ARCHS
    G: nn.Module  # in training mode, requires grad
    D: nn.Module
    resolution: int
    z_dim: int
    source: dict = field(default_factory=dict)  # where G (and D) came from, for provenance


def fresh(arch: str, resolution: int, z_dim: int, g_channels: int, d_channels: int, mapping_layers: int = 2,
          mbstd: int = 0):
    if arch == "dcgan":
        G = generators.create("dcgan", z_dim=z_dim, resolution=resolution, base_channels=g_channels)
        D = fresh_discriminator(arch, resolution, d_channels, mbstd)
    elif arch == "stylegan2":
        # widths: g_channels at full resolution, doubling per halving, at most 8x (as DCGAN's G)
        G = generators.create("stylegan2", z_dim=z_dim, w_dim=z_dim, img_resolution=resolution,
                              mapping_kwargs={"num_layers": mapping_layers},
                              synthesis_kwargs={"channel_base": g_channels * resolution,
                                                "channel_max": g_channels * 8})
        D = fresh_discriminator("stylegan2", resolution, d_channels, mbstd)
    elif arch == "lightweight-gan":  # FastGAN; no attention layers (they cost a CPU more than they give)
        G = generators.create("lightweight-gan", latent_dim=z_dim, image_size=resolution,
                              channels=lightweight_widths(resolution, g_channels))
        D = fresh_discriminator(arch, resolution, d_channels, mbstd)
    else:
        raise ValueError(f"--arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    return G, D


def lightweight_widths(resolution: int, g_channels: int) -> list[int]:
    """The lightweight-gan layers' widths, 8 px .. R px: g_channels at R, doubling per halving, at most 8x."""
    return [min(g_channels * resolution // 2**k, g_channels * 8) for k in range(3, resolution.bit_length())]


def fresh_discriminator(arch: str, resolution: int, d_channels: int, mbstd: int = 0) -> nn.Module:
    """`mbstd` > 0: a minibatch-spread channel over groups of that many images (DCGAN's D; StyleGAN2's and
    FastGAN's discriminators here do not take it)."""
    if mbstd and arch != "dcgan":
        raise MasqueradeError(f"--mbstd is for a DCGAN discriminator, not {arch}'s")
    if arch == "dcgan":
        return generators.create("dcgan-discriminator", resolution=resolution, base_channels=d_channels,
                                 mbstd_group=mbstd)
    if arch == "lightweight-gan":
        return FastGANDiscriminator(resolution=resolution, channels=d_channels, channel_max=d_channels * 8)
    return SG2Discriminator(resolution=resolution, channel_base=d_channels * resolution, channel_max=d_channels * 8)


def discriminator_beside(model: Path) -> Path | None:
    candidates = [model.with_name(f"{model.stem}-discriminator.safetensors")]
    if model.stem.startswith("generator-"):
        candidates.append(model.with_name("discriminator-" + model.stem.removeprefix("generator-") + ".safetensors"))
    return next((p for p in candidates if p.is_file()), None)


def load_discriminator(path: str | Path) -> tuple[nn.Module, str]:
    """A discriminator model file -> (module in eval mode, architecture name)."""
    card = checkpoint.read_card(path)
    if card.architecture in TRAINING_ONLY_D:
        try:
            module = TRAINING_ONLY_D[card.architecture](**card.config)
            module.load_state_dict(load_file(str(path)))
        except (TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: not a usable {card.architecture}: {e}") from None
        return module.eval(), card.architecture
    module, card = checkpoint.load(path)
    return module, card.architecture


def from_model(path: str | Path, arch: str | None, d_channels: int, mbstd: int = 0) -> Nets:
    """G from any model file the project reads; D from beside it or fresh."""
    from engine.generators import importers

    path = Path(path)
    loaded = importers.load(path)
    found = loaded.card.architecture
    if found not in ARCHS:
        raise CheckpointError(f"{path}: a {found!r} generator; fine-tuning takes {' or '.join(ARCHS)}")
    if arch and arch != found:
        raise CheckpointError(f"{path}: holds a {found} generator, but --arch {arch} was asked for")
    if getattr(loaded.module, "c_dim", 0):
        raise CheckpointError(f"{path}: a class-conditional generator; fine-tuning here is unconditional")
    G = loaded.module.train().requires_grad_(True)
    resolution = G.resolution
    source = {"from": str(path), "from_format": loaded.format,
              "from_sha256": loaded.card.provenance.get("source_sha256") or importers.sha256(path),
              "from_dataset": loaded.card.provenance.get("dataset", "")}
    d_path = discriminator_beside(path)
    D = None
    if d_path is not None:
        D, d_arch = load_discriminator(d_path)
        if d_arch != D_ARCH[found] or getattr(D, "resolution", None) != resolution:
            log.warning("%s: a %s at %s px does not fit; starting a fresh discriminator", d_path, d_arch,
                        getattr(D, "resolution", "?"))
            D = None
        elif D.config.get("mbstd_group", 0) != mbstd:
            log.warning("%s: its minibatch-spread group is %d, not --mbstd %d; starting a fresh discriminator "
                        "(give --d-warmup)", d_path, D.config.get("mbstd_group", 0), mbstd)
            D = None
        else:
            source["from_discriminator"] = str(d_path)
    if D is None:
        D = fresh_discriminator(found, resolution, d_channels, mbstd)
        source["from_discriminator"] = "fresh"
    return Nets(found, G, D.train().requires_grad_(True), resolution, G.z_dim, source)


def grow(path: str | Path, resolution: int, d_channels: int, mbstd: int = 0) -> Nets:
    """A DCGAN from `path` grown to twice its size (progressive growing, Karras et al. 2018, in one step) and a
    fresh discriminator. Why: at 128 px on two CPU cores, the layout a 64 px model already learned (which shapes,
    which colours) would take most of a from-scratch run to learn again; grown, only the new layers have detail
    to learn.

    The layers up to the old output keep the old model's widths (base width halved) and weights. The new pair
    (transposed conv, batch norm, ReLU; transposed conv to RGB) starts as the old output up-sampled: the first
    conv's first 2 x 3 channels are the old to-RGB conv and its negation, the batch norm undoes its own
    normalisation for them (set from a batch of the model's own features), ReLU(u) - ReLU(-u) = u, and the last
    conv adds the pair with a nearest-neighbour x2 kernel; its other channels start at zero weight. So the grown
    model's first picture is the old one enlarged pixel for pixel, not noise from random layers for the
    discriminator to chase: a first try from random new layers drew a grid of dark dots that grew with training,
    and a bilinear start lightened the border, whose taps read the transposed conv's zero padding
    (assets/models/emoji128.md)."""
    from engine.generators import importers

    path = Path(path)
    loaded = importers.load(path)
    if loaded.card.architecture != "dcgan":
        raise CheckpointError(f"{path}: a {loaded.card.architecture!r} generator; --grow-to grows a DCGAN")
    old = loaded.module
    config = dict(old.config)
    if resolution != 2 * config["resolution"]:
        raise CheckpointError(f"{path}: a {config['resolution']} px model grows to twice its size, "
                              f"{2 * config['resolution']}, not {resolution}")
    if config["base_channels"] % 2 or config["base_channels"] // 2 < 2 * config["out_channels"]:
        raise CheckpointError(f"{path}: its base width {config['base_channels']} is too small to halve")
    G = generators.create("dcgan", **{**config, "resolution": resolution,
                                      "base_channels": config["base_channels"] // 2})
    ours, theirs = G.state_dict(), old.state_dict()
    taken = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    G.load_state_dict({**ours, **taken})
    _start_as_enlarged(G, old)
    log.info("%s grown from %d to %d px: %d of its %d tensors taken, the new layers start as its picture enlarged",
             path, config["resolution"], resolution, len(taken), len(theirs))
    source = {"from": str(path), "from_format": loaded.format, "grown_from": config["resolution"],
              "from_sha256": loaded.card.provenance.get("source_sha256") or importers.sha256(path),
              "from_dataset": loaded.card.provenance.get("dataset", ""), "from_discriminator": "fresh"}
    D = fresh_discriminator("dcgan", resolution, d_channels, mbstd)
    return Nets("dcgan", G.train().requires_grad_(True), D.train().requires_grad_(True), resolution, G.z_dim, source)


@torch.no_grad()
def _start_as_enlarged(G: nn.Module, old: nn.Module, calibration: int = 512) -> None:
    """`grow`'s new layers set so that G draws `old`'s picture enlarged x2, nearest neighbour (see `grow`)."""
    to_rgb = old.main[-2].weight  # [C, 3, 4, 4], the old output conv
    first, norm, last = G.main[-5], G.main[-4], G.main[-2]  # [C, W, 4, 4], BatchNorm2d(W), [W, 3, 4, 4]
    rgb = to_rgb.shape[1]
    first.weight[:, :rgb] = to_rgb
    first.weight[:, rgb:2 * rgb] = -to_rgb
    # the batch norm's own statistics for those channels, on the model's features (train mode, as in training)
    z = torch.randn(calibration, G.z_dim, 1, 1, generator=torch.Generator().manual_seed(0))
    u = copy.deepcopy(G.main[:-4]).train()(z)  # the first conv's output [N, W, 2R', 2R'] (a copy: its running
    #                                               statistics stay the old model's)
    mean, var = u.mean(dim=[0, 2, 3]), u.var(dim=[0, 2, 3], unbiased=False)
    norm.weight[:2 * rgb] = (var[:2 * rgb] + norm.eps).sqrt()
    norm.bias[:2 * rgb] = mean[:2 * rgb]
    norm.running_mean.copy_(mean)
    norm.running_var.copy_(var)
    taps = torch.tensor([0.0, 1.0, 1.0, 0.0])  # a stride-2 transposed conv with these taps: nearest x2, which reads
    #                                           no padding (bilinear taps read the zero border: a light edge ring)
    kernel = torch.outer(taps, taps)
    last.weight.zero_()
    for c in range(rgb):
        last.weight[c, c] = kernel
        last.weight[rgb + c, c] = -kernel


def generate(arch: str, G: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """What the discriminator sees while training: z [B, z_dim] -> [B, 3, R, R], about [0, 1]. StyleGAN2
    draws fresh noise; neither it nor lightweight-gan is clamped (a clamp would cut the gradient at the
    extremes)."""
    if arch == "stylegan2":
        return (G.synthesis(G.mapping(z), noise_mode="random")[:, :3] + 1) * 0.5
    if arch == "lightweight-gan":
        return G.synthesize(z)[:, :3]
    return G(z)
