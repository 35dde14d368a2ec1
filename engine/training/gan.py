"""GAN training on a folder of images: DCGAN, a small StyleGAN2 or a lightweight-gan (FastGAN) from scratch,
or fine-tuning any generator the project loads, with the tricks that make a few thousand images and two CPU
cores enough.

- non-saturating logistic loss (Goodfellow et al. 2014); DCGAN's discriminator has spectral norm
  (Miyato et al. 2018, arXiv:1802.05957), folded into plain weights when saved; StyleGAN2's has the
  R1 penalty (Mescheder et al. 2018), lazily every 16 steps, and optionally path-length
  regularisation of G (Karras et al. 2020, arXiv:1912.04958 §3.2), lazily every 4;
- lightweight-gan (FastGAN, Liu et al. 2021, arXiv:2101.04775): hinge loss (Lim & Ye 2017), a spectral-norm
  FastGAN discriminator (engine.training.fastgan_discriminator) with its self-supervised reconstruction
  decoder (L2 to the input it saw, weight `recon`), and G learning at a quarter of D's rate (the two
  time-scale rule, Heusel et al. 2017, arXiv:1706.08500): at equal rates G undid every step of D's at once
  (D's hinge loss stayed at 2.0, D(real) = D(fake)) and all z drew one shape (run emoji128-fastgan, 2026-12-02);
- augmentation of both real and fake before D: DiffAugment (engine.training.augment) or ADA with its
  adaptive probability (engine.training.ada);
- an exponential moving average of the generator (Karras et al. 2018), which is what ships;
- data parallel over processes (engine.training.distributed), gloo backend.

The length of a run is counted in images shown (`kimg`, thousands), as in NVlabs' code, or in steps.
Snapshots are model files that play in a show at once (with the run's config in their provenance),
a sample grid from fixed latents and a loss plot; `state.pt` beside them resumes training.
"""

from __future__ import annotations

import copy
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from engine import generators
from engine.generators import checkpoint
from engine.training import distributed, nets
from engine.training.ada import AdaptiveAugment
from engine.training.augment import diff_augment
from engine.training.plots import loss_plot

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


@dataclass
class TrainConfig:
    data: str
    out: str
    device: str = "auto"  # "auto" (CUDA when PyTorch sees one), "cpu", "cuda", "cuda:1"
    resolution: int = 64
    z_dim: int = 128
    g_channels: int = 32
    d_channels: int = 32
    batch: int = 64  # over all processes together
    steps: int = 10_000
    lr: float = 0.0  # 0: the architecture's own (DCGAN 2e-4, StyleGAN2 2.5e-3); D's, and G's unless g_lr
    g_lr: float = 0.0  # 0: the same as D's, but a quarter of it for lightweight-gan (TTUR; see the docstring)
    ema_decay: float = 0.999
    snapshot_every: int = 500
    seed: int = 0
    threads: int = 0  # 0: torch's default
    dataset_name: str = ""
    licence: str = ""
    arch: str = ""  # dcgan | stylegan2 | lightweight-gan; empty: the `init` model file's own, else dcgan
    init: str = ""  # a model file to fine-tune from (anything engine.generators.importers reads)
    kimg: float = 0.0  # > 0: train until this many thousand real images were shown (overrides `steps`)
    snapshot_kimg: float = 0.0  # > 0: a snapshot every this many kimg (overrides `snapshot_every`)
    augment: str = "auto"  # diffaugment | ada | none; auto: DiffAugment for DCGAN, ADA for StyleGAN2
    ada_target: float = 0.6  # r_t the adaptive augmentation steers toward
    ada_kimg: float = 100.0  # p can move by 1 in this many kimg
    r1_gamma: float = -1.0  # < 0: auto (none for DCGAN, which has spectral norm; 2e-4 R^2 / batch for StyleGAN2)
    pl_weight: float = 0.0  # StyleGAN2 path-length regularisation (NVlabs: 2); 0 is off
    mapping_layers: int = 2  # a fresh StyleGAN2's mapping network (the paper's: 8)
    loss: str = "auto"  # logistic (non-saturating) | hinge; auto: hinge for lightweight-gan, else logistic
    recon: float = 1.0  # lightweight-gan: weight of D's reconstruction loss (0: the decoder is not trained)
    snapshot_minutes: float = 0.0  # > 0: also a snapshot whenever this many minutes passed since the last
    grow_to: int = 0  # > 0, with `init` (a DCGAN): train at this resolution from the model's layers (nets.grow)
    d_warmup: int = 0  # the first N steps train D alone (G and its EMA still): see `train_step`
    mbstd: int = 0  # > 0: a fresh DCGAN D gets a minibatch-spread channel over groups of this many images

    def __post_init__(self):
        if self.arch and self.arch not in nets.ARCHS:
            raise ValueError(f"arch must be one of {', '.join(nets.ARCHS)}, got {self.arch!r}")
        if self.augment not in ("auto", "diffaugment", "ada", "none"):
            raise ValueError(f"augment must be auto, diffaugment, ada or none, got {self.augment!r}")
        if self.loss not in ("auto", "logistic", "hinge"):
            raise ValueError(f"loss must be auto, logistic or hinge, got {self.loss!r}")

    @property
    def total_steps(self) -> int:
        return math.ceil(self.kimg * 1000 / self.batch) if self.kimg > 0 else self.steps

    @property
    def snapshot_steps(self) -> int:
        return max(1, round(self.snapshot_kimg * 1000 / self.batch)) if self.snapshot_kimg > 0 else self.snapshot_every


def load_folder(folder: str | Path, resolution: int) -> torch.Tensor:
    """Every image in `folder` as one uint8 tensor [N, 3, R, R] (small sets fit in memory)."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images = []
    for p in files:
        im = Image.open(p).convert("RGB")
        if im.size != (resolution, resolution):
            im = im.resize((resolution, resolution), Image.LANCZOS)
        images.append(np.asarray(im))
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def sample_grid(images: torch.Tensor, columns: int = 8) -> Image.Image:
    """[B, 3, H, W] in [0, 1] -> one PIL image, `columns` wide."""
    b, _, h, w = images.shape
    rows = (b + columns - 1) // columns
    grid = torch.zeros(3, rows * h, columns * w)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        grid[:, r * h:(r + 1) * h, c * w:(c + 1) * w] = im
    return Image.fromarray((grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        distributed.init_from_env()
        self.rank, self.world = distributed.rank_and_world()
        if cfg.batch % self.world:
            raise ValueError(f"batch {cfg.batch} does not split over {self.world} processes")
        self.batch = cfg.batch // self.world  # this process's share
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        if cfg.init:
            built = nets.grow(cfg.init, cfg.grow_to, cfg.d_channels, cfg.mbstd) if cfg.grow_to else \
                nets.from_model(cfg.init, cfg.arch or None, cfg.d_channels, cfg.mbstd)
            self.G, self.D, self.source = built.G, built.D, built.source
            self.arch, self.resolution, self.z_dim = built.arch, built.resolution, built.z_dim
        else:
            self.G, self.D = nets.fresh(cfg.arch or "dcgan", cfg.resolution, cfg.z_dim, cfg.g_channels, cfg.d_channels,
                                        cfg.mapping_layers, cfg.mbstd)
            self.arch, self.resolution, self.z_dim = cfg.arch or "dcgan", cfg.resolution, cfg.z_dim
            self.source = {}
        self.data = load_folder(cfg.data, self.resolution)  # uint8 on the CPU; batches go to the device
        self.device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                                   "cpu" if cfg.device == "auto" else cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {cfg.device!r}: no CUDA device is available to PyTorch here")
        if self.device.type == "cuda" and self.device.index is None and self.world > 1:
            self.device = torch.device("cuda", self.rank % torch.cuda.device_count())  # one GPU per process
        self.G.to(self.device)
        self.D.to(self.device)
        if self.arch in ("dcgan", "lightweight-gan"):
            for m in self.D.modules():
                if isinstance(m, nn.Conv2d):
                    spectral_norm(m)
            if cfg.init:  # a trained D: let the power iteration find its weights' norms before training
                with torch.no_grad():
                    for m in self.D.modules():
                        if isinstance(m, nn.Conv2d):
                            for _ in range(30):
                                _ = m.weight
        distributed.broadcast_module(self.G)
        distributed.broadcast_module(self.D)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        sg2 = self.arch == "stylegan2"
        lr = cfg.lr or (2.5e-3 if sg2 else 2e-4)  # FastGAN's is DCGAN's
        beta1 = 0.0 if sg2 else 0.5
        self.r1_gamma = cfg.r1_gamma if cfg.r1_gamma >= 0 else (2e-4 * self.resolution**2 / cfg.batch if sg2 else 0.0)
        self.r1_interval, self.pl_interval = 16, 4
        # lazy regularisation: the optimiser's step is rescaled as if the penalty ran every step (NVlabs)
        c_d = self.r1_interval / (self.r1_interval + 1) if self.r1_gamma > 0 else 1.0
        c_g = self.pl_interval / (self.pl_interval + 1) if sg2 and cfg.pl_weight > 0 else 1.0
        self.lr_D = lr
        self.lr_G = cfg.g_lr or (lr / 4 if self.arch == "lightweight-gan" else lr)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=self.lr_G * c_g, betas=(beta1**c_g, 0.99**c_g))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr * c_d, betas=(beta1**c_d, 0.99**c_d))
        augment = cfg.augment if cfg.augment != "auto" else ("ada" if sg2 else "diffaugment")
        self.augment_name = augment
        self.loss = cfg.loss if cfg.loss != "auto" else ("hinge" if self.arch == "lightweight-gan" else "logistic")
        self.ada = AdaptiveAugment(cfg.ada_target, cfg.ada_kimg) if augment == "ada" else None
        self.pl_mean = torch.zeros([], device=self.device)
        self.step = 0
        self.fixed_z = torch.randn(64, self.z_dim, generator=torch.Generator().manual_seed(1234)).to(self.device)
        self.log: list[dict] = []
        self._resume()
        if self.world > 1:  # each process draws its own batches
            torch.manual_seed(cfg.seed + 1000 * self.rank + self.step)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        if self.ada is not None:
            return self.ada(x)
        if self.augment_name == "diffaugment":
            return diff_augment(x)
        return x

    def _resume(self) -> None:
        state_path = self.out / "state.pt"
        if not state_path.exists():
            return
        state = torch.load(state_path, map_location=self.device, weights_only=True)  # our own file; no code runs
        for name in ("G", "D", "G_ema", "opt_G", "opt_D"):
            getattr(self, name).load_state_dict(state[name])
        self.step = int(state["step"])
        self.log = json.loads(state["log"])
        torch.set_rng_state(state["rng"].cpu())
        if self.ada is not None and "ada_p" in state:
            self.ada.p = float(state["ada_p"])
        if "pl_mean" in state:
            self.pl_mean = state["pl_mean"]
        if self.rank == 0:
            print(f"resumed {state_path} at step {self.step}", file=sys.stderr)

    def kimg(self, step: int | None = None) -> float:
        return (self.step if step is None else step) * self.cfg.batch / 1000

    def train_step(self) -> dict:
        cfg, b = self.cfg, self.batch
        sg2 = self.arch == "stylegan2"
        dev = self.device
        idx = torch.randint(0, len(self.data), (b,))
        real = self.data[idx].float() / 255  # [B, 3, R, R]
        flip = torch.rand(b) < 0.5
        real[flip] = real[flip].flip(3)
        real = real.to(dev)
        stats = {}

        # discriminator: real -> 1, fake -> 0 (+ R1: the gradient's norm on reals, lazily)
        self.D.requires_grad_(True)
        z = torch.randn(b, self.z_dim).to(dev)  # drawn on the CPU: the same run on any device
        with torch.no_grad():
            fake = nets.generate(self.arch, self.G, z)
        do_r1 = self.r1_gamma > 0 and self.step % self.r1_interval == 0
        real_in = real.detach().requires_grad_(do_r1)
        real_aug = self.augment(real_in)
        d_real, recon = self.discriminate(real_aug)
        d_fake, _ = self.discriminate(self.augment(fake))
        if self.loss == "hinge":
            loss_D = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        else:
            loss_D = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        if recon is not None and cfg.recon > 0:  # FastGAN's self-supervision: D describes what it saw
            from engine.training.fastgan_discriminator import reconstruction_target

            rec = F.mse_loss(recon, reconstruction_target(real_aug.detach(), recon))
            loss_D = loss_D + rec * cfg.recon
            stats["recon"] = rec.item()
        if do_r1:
            (grad,) = torch.autograd.grad(d_real.sum(), real_in, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3]).mean()
            loss_D = loss_D + r1 * (self.r1_gamma / 2) * self.r1_interval
            stats["r1"] = r1.item()
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        distributed.average_gradients(self.D.parameters())
        self.opt_D.step()
        if self.ada is not None:
            self.ada.observe(d_real)
            if (self.step + 1) % self.ada.interval == 0:
                self.ada.adjust(cfg.batch * self.ada.interval, distributed.sum_over_processes)

        if self.step < cfg.d_warmup:
            # D alone first: a fresh D against a G that already draws well (a grown or fine-tuned model) starts
            # blind, D(real) = D(fake) = 0, and Adam turns its near-zero, noisy gradient into full-size G steps
            # that only add noise (the grown emoji128 run 2: D's loss 1.386 for 1,800 steps, a checkerboard)
            self.step += 1
            return {"step": self.step, "kimg": round(self.kimg(), 3), "loss_D": loss_D.item(),
                    "D_real": d_real.mean().item(), "D_fake": d_fake.mean().item(), **stats}

        # generator: make D call fakes real (+ path length, lazily)
        self.D.requires_grad_(False)
        z = torch.randn(b, self.z_dim).to(dev)
        d_gen = self.discriminate(self.augment(nets.generate(self.arch, self.G, z)), reconstruct=False)[0]
        loss_G = -d_gen.mean() if self.loss == "hinge" else F.softplus(-d_gen).mean()
        if sg2 and cfg.pl_weight > 0 and self.step % self.pl_interval == 0:
            pl = self.path_length_penalty(max(1, b // 2))
            loss_G = loss_G + pl * cfg.pl_weight * self.pl_interval
            stats["pl"] = pl.item()
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        distributed.average_gradients(self.G.parameters())
        self.opt_G.step()

        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.lerp_(p, 1 - cfg.ema_decay)
            if sg2:  # w_avg (the truncation centre) and the constant noise follow G itself
                for b_ema, b_ in zip(self.G_ema.buffers(), self.G.buffers()):
                    b_ema.copy_(b_)
        self.step += 1
        stats = {"step": self.step, "kimg": round(self.kimg(), 3), "loss_D": loss_D.item(),
                 "loss_G": loss_G.item(), "D_real": d_real.mean().item(), "D_fake": d_fake.mean().item(), **stats}
        if self.ada is not None:
            stats["ada_p"] = round(self.ada.p, 5)
            if self.ada.r_t is not None:
                stats["r_t"] = round(self.ada.r_t, 4)
        return stats

    def discriminate(self, x: torch.Tensor, reconstruct: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B, 3, R, R] -> (logits [B] or FastGAN's patch logits [B, P], its reconstruction or None)."""
        if self.arch == "lightweight-gan":
            logits, recon = self.D.run(x)
            return logits, recon if reconstruct else None
        return self.D(x), None

    def path_length_penalty(self, b: int) -> torch.Tensor:
        """(|J_w^T y| - a)^2: the image's change per unit step in w, held constant (Karras et al. 2020 §3.2)."""
        ws = self.G.mapping(torch.randn(b, self.z_dim).to(self.device))  # [B, num_ws, w_dim]
        img = self.G.synthesis(ws, noise_mode="random")  # [B, C, R, R]
        noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()  # [B]
        self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), 0.01)
        return (lengths - self.pl_mean).square().mean()

    def provenance(self) -> dict:
        cfg = self.cfg
        trainer = ("engine.training.gan (non-saturating loss, spectral-norm D, DiffAugment, EMA G)"
                   if self.arch == "dcgan" and self.augment_name == "diffaugment" and not cfg.init else
                   f"engine.training.gan (lightweight-gan, {self.loss} loss, spectral-norm FastGAN D"
                   + (f" with reconstruction decoder (L2, weight {cfg.recon:g})" if cfg.recon > 0 else "")
                   + f", augment {self.augment_name}, Adam G {self.lr_G:g} / D {self.lr_D:g}, EMA G"
                   + (", fine-tuned" if cfg.init else "") + ")"
                   if self.arch == "lightweight-gan" else
                   f"engine.training.gan ({self.arch}, non-saturating loss, "
                   + ("spectral-norm D" if self.arch == "dcgan" else f"R1 gamma {self.r1_gamma:g}")
                   + (f", path length {cfg.pl_weight:g}" if self.arch == "stylegan2" and cfg.pl_weight else "")
                   + f", augment {self.augment_name}, EMA G" + (", fine-tuned" if cfg.init else "") + ")")
        prov = {"dataset": cfg.dataset_name or str(cfg.data), "images": len(self.data),
                "steps": self.step, "batch": cfg.batch, "kimg": round(self.kimg(), 3), "licence": cfg.licence,
                "trainer": trainer,
                "command": "masquerade train " + " ".join(shlex.quote(a) for a in sys.argv[2:])
                if len(sys.argv) > 1 and sys.argv[1] == "train" else "",
                "config": asdict(cfg), **self.source}
        if self.ada is not None:
            prov["ada_p"] = round(self.ada.p, 5)
        if self.world > 1:
            prov["processes"] = self.world
        return prov

    def plain_discriminator(self) -> nn.Module:
        """D with spectral norm folded into its weights (eval mode: no power iteration is spent)."""
        if self.arch == "lightweight-gan":  # (a deep copy would share, and lose, the parametrised class)
            plain = nets.TRAINING_ONLY_D[nets.D_ARCH[self.arch]](**self.D.config)
            source = dict(self.D.eval().named_modules())
            with torch.no_grad():
                for name, m in plain.named_modules():
                    if isinstance(m, nn.Conv2d):
                        m.weight.copy_(source[name].weight)
                        m.bias.copy_(source[name].bias)
            self.D.train()
            return plain.eval().requires_grad_(False)
        if self.arch != "dcgan":
            return copy.deepcopy(self.D).eval().requires_grad_(False)
        plain = generators.create("dcgan-discriminator", **self.D.config)
        self.D.eval()
        with torch.no_grad():
            convs = [m for m in self.D.modules() if isinstance(m, nn.Conv2d)]
            for dst, src in zip([m for m in plain.modules() if isinstance(m, nn.Conv2d)], convs, strict=True):
                dst.weight.copy_(src.weight)
                dst.bias.copy_(src.bias)
        self.D.train()
        return plain.eval()

    @torch.no_grad()
    def standing_statistics(self, batches: int = 16) -> None:
        """Batch-norm statistics measured on the averaged weights themselves: the training G's
        running statistics belong to other weights, and with them the EMA generator draws mush."""
        gen = torch.Generator().manual_seed(self.step)  # leaves the training RNG untouched
        norms = [m for m in self.G_ema.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches below
        self.G_ema.train()
        for _ in range(batches):
            self.G_ema(torch.randn(self.cfg.batch, self.z_dim, generator=gen).to(self.device))
        self.G_ema.eval()
        for m in norms:
            m.momentum = 0.1

    def snapshot(self) -> Path:
        """Model files, sample grid and loss plot for this step, and `state.pt` (first process only)."""
        tag = f"{self.step:06d}"
        g_path = self.out / f"generator-{tag}.safetensors"
        if self.rank != 0:
            return g_path
        self.standing_statistics()
        prov = self.provenance()
        checkpoint.save(copy.deepcopy(self.G_ema).cpu(), self.arch, g_path, prov)
        checkpoint.save(self.plain_discriminator().cpu(), nets.D_ARCH[self.arch],
                        self.out / f"discriminator-{tag}.safetensors", prov)
        with torch.no_grad():
            sample_grid(self.G_ema(self.fixed_z).cpu()).save(self.out / f"samples-{tag}.png")
        loss_plot(self.log).save(self.out / f"losses-{tag}.png")
        state = {name: getattr(self, name).state_dict() for name in ("G", "D", "G_ema", "opt_G", "opt_D")}
        state.update(step=self.step, log=json.dumps(self.log), rng=torch.get_rng_state(),
                     config=json.dumps(asdict(self.cfg)), pl_mean=self.pl_mean)
        if self.ada is not None:
            state["ada_p"] = self.ada.p
        tmp = self.out / "state.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.out / "state.pt")
        return g_path

    def run(self, progress: bool = True) -> Path:
        from tqdm import tqdm

        total, every = self.cfg.total_steps, self.cfg.snapshot_steps
        bar = tqdm(total=total, initial=self.step, disable=not progress, unit="step")
        last = None
        t0 = last_time = time.perf_counter()
        while self.step < total:
            stats = self.train_step()
            stats["seconds"] = round(time.perf_counter() - t0, 1)
            self.log.append(stats)
            bar.update(1)
            post = {"kimg": f"{stats['kimg']:.1f}", "D": f"{stats['loss_D']:.3f}",
                    "G": f"{stats['loss_G']:.3f}" if "loss_G" in stats else "-"}  # none while D warms up
            if "ada_p" in stats:
                post["p"] = f"{stats['ada_p']:.3f}"
            bar.set_postfix(post)
            minutes = (time.perf_counter() - last_time) / 60
            overdue = 0 < self.cfg.snapshot_minutes <= minutes
            if self.step % every == 0 or self.step == total or overdue:
                last = self.snapshot()
                last_time = time.perf_counter()
        bar.close()
        return last or self.snapshot()
