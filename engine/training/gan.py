"""GAN training on a folder of images: DCGAN from scratch, with the tricks that make a few thousand
images and two CPU cores enough.

- non-saturating logistic loss (Goodfellow et al. 2014) with spectral norm on the discriminator
  (Miyato et al. 2018, arXiv:1802.05957), folded into plain weights when saved;
- DiffAugment on both real and fake (engine.training.augment);
- an exponential moving average of the generator (Karras et al. 2018), which is what ships.

Snapshots are model files that play in a show at once; `state.pt` beside them resumes training.
"""

from __future__ import annotations

import copy
import json
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
from engine.training.augment import diff_augment

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


@dataclass
class TrainConfig:
    data: str
    out: str
    resolution: int = 64
    z_dim: int = 128
    g_channels: int = 32
    d_channels: int = 32
    batch: int = 64
    steps: int = 10_000
    lr: float = 2e-4
    ema_decay: float = 0.999
    snapshot_every: int = 500
    seed: int = 0
    threads: int = 0  # 0: torch's default
    dataset_name: str = ""
    licence: str = ""


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
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.data = load_folder(cfg.data, cfg.resolution)
        self.G = generators.create("dcgan", z_dim=cfg.z_dim, resolution=cfg.resolution,
                                   base_channels=cfg.g_channels)
        self.D = generators.create("dcgan-discriminator", resolution=cfg.resolution,
                                   base_channels=cfg.d_channels)
        for m in self.D.modules():
            if isinstance(m, nn.Conv2d):
                spectral_norm(m)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=(0.5, 0.99))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=(0.5, 0.99))
        self.step = 0
        self.fixed_z = torch.randn(64, cfg.z_dim, generator=torch.Generator().manual_seed(1234))
        self.log: list[dict] = []
        self._resume()

    def _resume(self) -> None:
        state_path = self.out / "state.pt"
        if not state_path.exists():
            return
        state = torch.load(state_path, weights_only=True)  # our own file, still never unpickled code
        for name in ("G", "D", "G_ema", "opt_G", "opt_D"):
            getattr(self, name).load_state_dict(state[name])
        self.step = int(state["step"])
        self.log = json.loads(state["log"])
        torch.set_rng_state(state["rng"])
        print(f"resumed {state_path} at step {self.step}", file=sys.stderr)

    def train_step(self) -> dict:
        cfg = self.cfg
        idx = torch.randint(0, len(self.data), (cfg.batch,))
        real = self.data[idx].float() / 255  # [B, 3, R, R]
        flip = torch.rand(cfg.batch) < 0.5
        real[flip] = real[flip].flip(3)

        # discriminator: real -> 1, fake -> 0
        z = torch.randn(cfg.batch, cfg.z_dim)
        with torch.no_grad():
            fake = self.G(z)
        d_real = self.D(diff_augment(real))
        d_fake = self.D(diff_augment(fake))
        loss_D = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        self.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        self.opt_D.step()

        # generator: make D call fakes real
        z = torch.randn(cfg.batch, cfg.z_dim)
        loss_G = F.softplus(-self.D(diff_augment(self.G(z)))).mean()
        self.opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        self.opt_G.step()

        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.lerp_(p, 1 - cfg.ema_decay)
        self.step += 1
        return {"step": self.step, "loss_D": loss_D.item(), "loss_G": loss_G.item(),
                "D_real": d_real.mean().item(), "D_fake": d_fake.mean().item()}

    def provenance(self) -> dict:
        cfg = self.cfg
        return {"dataset": cfg.dataset_name or str(cfg.data), "images": len(self.data),
                "steps": self.step, "batch": cfg.batch, "licence": cfg.licence,
                "trainer": "engine.training.gan (non-saturating loss, spectral-norm D, DiffAugment, EMA G)",
                "command": "masquerade train " + " ".join(shlex.quote(a) for a in sys.argv[2:])
                if len(sys.argv) > 1 and sys.argv[1] == "train" else ""}

    def plain_discriminator(self) -> nn.Module:
        """D with spectral norm folded into its weights (eval mode: no power iteration is spent)."""
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
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches below
        self.G_ema.train()
        for _ in range(batches):
            self.G_ema(torch.randn(self.cfg.batch, self.cfg.z_dim, generator=gen))
        self.G_ema.eval()
        for m in norms:
            m.momentum = 0.1

    def snapshot(self) -> Path:
        tag = f"{self.step:06d}"
        self.standing_statistics()
        prov = self.provenance()
        g_path = self.out / f"generator-{tag}.safetensors"
        checkpoint.save(self.G_ema, "dcgan", g_path, prov)
        checkpoint.save(self.plain_discriminator(), "dcgan-discriminator",
                        self.out / f"discriminator-{tag}.safetensors", prov)
        with torch.no_grad():
            sample_grid(self.G_ema(self.fixed_z)).save(self.out / f"samples-{tag}.png")
        state = {name: getattr(self, name).state_dict() for name in ("G", "D", "G_ema", "opt_G", "opt_D")}
        state.update(step=self.step, log=json.dumps(self.log), rng=torch.get_rng_state(),
                     config=json.dumps(asdict(self.cfg)))
        tmp = self.out / "state.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.out / "state.pt")
        return g_path

    def run(self, progress: bool = True) -> Path:
        from tqdm import tqdm

        bar = tqdm(total=self.cfg.steps, initial=self.step, disable=not progress, unit="step")
        last = None
        t0 = time.perf_counter()
        while self.step < self.cfg.steps:
            stats = self.train_step()
            stats["seconds"] = round(time.perf_counter() - t0, 1)
            self.log.append(stats)
            bar.update(1)
            bar.set_postfix(D=f"{stats['loss_D']:.3f}", G=f"{stats['loss_G']:.3f}")
            if self.step % self.cfg.snapshot_every == 0 or self.step == self.cfg.steps:
                last = self.snapshot()
        bar.close()
        return last or self.snapshot()
