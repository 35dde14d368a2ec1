"""Training the shipped super-resolution filter: a small Real-ESRGAN compact net (`SRVGGNetCompact`,
Wang et al. 2021, arXiv:2107.10833) learning x4 from pictures the project can make with no download.

Data (high-resolution crops, 136 px, kept in memory as uint8):
- Noto Color Emoji glyphs (SIL OFL 1.1), the font's own 136 px bitmaps, on the default model's dark
  background or a random one, at full size and shrunk; every 20th glyph is held out for evaluation;
- Openclipart PNGs (public domain, Debian `openclipart-png`) when `/usr/share/openclipart` exists;
- procedural pictures: shapes with outlines, gradients and glyphs of text, drawn 4x and shrunk.

Degradation (per sample, on the fly): Gaussian blur (sigma 0..1.5 high-res pixels), x4 downscale by
area, antialiased bicubic or antialiased bilinear, then Gaussian noise (sigma up to 0.02) on half the
samples: the default GAN's frames are soft and a little noisy, never cleanly decimated.
Loss: L1 plus a small L1 on horizontal and vertical differences (edges). Adam, cosine learning rate.

A generator's own frames (`--generator MODEL`): an SR for one GAN should know what that GAN draws, but a GAN
frame has no high-resolution original. So its frames join training as their own targets, as in "zero-shot"
SR (Shocher et al. 2018, arXiv:1712.06087: a picture's structure recurs across scales): a frame shrunk x`scale`
by the same degradation is the input, the frame itself the target. Each step adds a batch of those pairs
(`generator_batch` whole frames, weight `generator_weight`) to the real pictures' batch, whose targets keep the
detail no GAN frame has. Held out: 64 frames from other latents, measured the same way. `--init` starts from a
trained SR file (fine-tuning) instead of from bilinear.

The output is a plain Real-ESRGAN-layout state dict in a Masquerade `.safetensors` model file
(`engine.filters.superres.load_sr` reads it); `state.pt` beside the snapshots resumes training.

    python -m engine.training.superres --out runs/sr --steps 4000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shlex
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from engine.filters.sr_compact import SRVGGNetCompact
from engine.generators import checkpoint

HR = 136  # side of the stored high-resolution pictures: the emoji font's bitmap size
DARK = (14, 14, 18)  # the default model's background (engine.training.emoji.BACKGROUND)
CLIPART = Path("/usr/share/openclipart/png")
TEXT_FONT = Path("/usr/share/fonts/truetype/noto/NotoSansMono-Bold.ttf")
HOLDOUT_EVERY = 20  # emoji glyph i is held out when i % 20 == 0
LICENCE = ("weights: CC0-1.0 (Masquerade project); training data: Noto Color Emoji glyphs, SIL OFL 1.1; "
           "Openclipart, public domain; procedural pictures")


@dataclass
class SRTrainConfig:
    out: str
    steps: int = 4000
    batch: int = 32
    patch: int = 32  # low-resolution patch side; the target is patch * scale
    scale: int = 4
    num_feat: int = 32
    num_conv: int = 6
    lr: float = 1e-3
    warmup: int = 100
    edge_weight: float = 0.1
    margin_weight: float = 0.1  # loss weight of the outer `scale` pixels of each crop (sr_loss)
    max_blur: float = 1.5  # Gaussian sigma, high-resolution pixels
    max_noise: float = 0.02
    emoji: int = -1  # how many training glyphs (-1: all)
    clipart: int = 5000  # how many Openclipart files (0: none; ignored where not installed)
    procedural: int = 2000
    snapshot_every: int = 500
    log_every: int = 50
    seed: int = 0
    threads: int = 0  # 0: torch's default
    generator: str = ""  # a generator model file whose frames train the net too (see the module docstring)
    generator_frames: int = 2048
    generator_batch: int = 16
    generator_weight: float = 0.5
    init: str = ""  # an SR model file (ours, same scale and size) to start from instead of bilinear


# -- pictures ---------------------------------------------------------------------------------------

def _composite(rgba: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    canvas = Image.new("RGBA", rgba.size, background + (255,))
    canvas.alpha_composite(rgba)
    return canvas.convert("RGB")


def _random_background(rng: random.Random) -> tuple[int, int, int]:
    roll = rng.random()
    if roll < 0.6:
        return DARK
    if roll < 0.8:
        return (255, 255, 255)
    return tuple(rng.randrange(256) for _ in range(3))


def _glyph_picture(glyph: Image.Image, rng: random.Random, shrink: bool) -> Image.Image:
    """A 136 px RGB picture of one glyph: full size, or shrunk (still sharp) and placed at random."""
    glyph = glyph.resize((HR, HR), Image.LANCZOS) if glyph.size != (HR, HR) else glyph
    if shrink:
        side = rng.randrange(56, 120)
        small = glyph.resize((side, side), Image.LANCZOS)
        glyph = Image.new("RGBA", (HR, HR), (0, 0, 0, 0))
        glyph.alpha_composite(small, (rng.randrange(HR - side + 1), rng.randrange(HR - side + 1)))
    return _composite(glyph, _random_background(rng))


def emoji_glyphs(heldout: bool) -> list[Image.Image]:
    """The font's glyph bitmaps (RGBA): the held-out ones (i % 20 == 0), or all the others."""
    from engine.training.emoji import glyph_images

    return [g for i, (_, g) in enumerate(glyph_images()) if (i % HOLDOUT_EVERY == 0) == heldout]


def clipart_files() -> list[Path]:
    return sorted(CLIPART.rglob("*.png")) if CLIPART.is_dir() else []


def clipart_picture(path: Path, rng: random.Random) -> Image.Image | None:
    """A 136 px crop of a clipart file, shrunk by a random amount first (never enlarged), or None
    when the file is too small or the crop is nearly flat."""
    try:
        with warnings.catch_warnings():  # the size is checked here, below Pillow's own bomb limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)  # reads the header only
        if im.width * im.height > 16_000_000:  # a few files are poster-sized: not worth decoding
            return None
        im.load()
    except (OSError, Image.DecompressionBombError):
        return None
    im = im.convert("RGBA")
    short = min(im.size)
    if short < HR:
        return None
    target = rng.randint(HR, min(short, 3 * HR))
    im = im.resize((round(im.width * target / short), round(im.height * target / short)), Image.LANCZOS)
    for _ in range(4):  # look for a crop with something in it
        x, y = rng.randrange(im.width - HR + 1), rng.randrange(im.height - HR + 1)
        crop = _composite(im.crop((x, y, x + HR, y + HR)), _random_background(rng))
        if np.asarray(crop).std() > 20:
            return crop
    return None


def procedural_picture(rng: random.Random) -> Image.Image:
    """Flat and graded shapes with dark outlines, and a few letters: drawn at 4x, shrunk to 136 px."""
    big = HR * 4

    def colour():
        return tuple(rng.randrange(256) for _ in range(3))

    if rng.random() < 0.5:
        im = Image.new("RGB", (big, big), DARK if rng.random() < 0.5 else colour())
    else:  # a linear gradient between two colours
        a, b = np.array(colour(), float), np.array(colour(), float)
        t = np.linspace(0, 1, big)[:, None, None]
        ramp = np.broadcast_to(a + (b - a) * t, (big, big, 3)).astype(np.uint8)
        im = Image.fromarray(ramp.transpose(1, 0, 2) if rng.random() < 0.5 else ramp)
    draw = ImageDraw.Draw(im)
    for _ in range(rng.randint(3, 12)):
        x0, y0 = rng.randrange(-big // 4, big), rng.randrange(-big // 4, big)
        w, h = rng.randrange(big // 12, big // 2), rng.randrange(big // 12, big // 2)
        box = (x0, y0, x0 + w, y0 + h)
        outline = (0, 0, 0) if rng.random() < 0.6 else colour()
        width = rng.choice([0, 4, 8, 12, 20])
        kind = rng.random()
        if kind < 0.35:
            draw.ellipse(box, fill=colour(), outline=outline, width=width)
        elif kind < 0.6:
            points = [(rng.randrange(x0, x0 + w), rng.randrange(y0, y0 + h)) for _ in range(rng.randint(3, 7))]
            draw.polygon(points, fill=colour(), outline=outline, width=max(width, 1))
        elif kind < 0.8:
            draw.rounded_rectangle(box, radius=rng.randrange(1, min(w, h) // 2 + 2), fill=colour(),
                                   outline=outline, width=width)
        else:
            draw.line([(x0, y0), (x0 + w, y0 + h), (x0 + w // 3, y0 + h)], fill=colour(),
                      width=rng.choice([4, 8, 16, 24]), joint="curve")
    if TEXT_FONT.is_file() and rng.random() < 0.4:
        font = ImageFont.truetype(str(TEXT_FONT), rng.randrange(60, 200))
        text = "".join(rng.choice("ABCDEFGHKMRSWXYZabdegkmqrsx0123456789?&@") for _ in range(rng.randint(1, 4)))
        draw.text((rng.randrange(big // 2), rng.randrange(big // 2)), text, fill=colour(), font=font)
    return im.resize((HR, HR), Image.LANCZOS)


def to_tensor(pictures: list[Image.Image]) -> torch.Tensor:
    """PIL RGB pictures -> uint8 [N, 3, 136, 136]."""
    return torch.from_numpy(np.stack([np.asarray(p, dtype=np.uint8) for p in pictures])).permute(0, 3, 1, 2)


def training_pictures(cfg: SRTrainConfig) -> tuple[torch.Tensor, dict]:
    """uint8 [N, 3, 136, 136] and a count per source."""
    rng = random.Random(cfg.seed)
    pictures, counts = [], {}
    glyphs = emoji_glyphs(heldout=False)
    if cfg.emoji >= 0:
        glyphs = rng.sample(glyphs, min(cfg.emoji, len(glyphs)))
    for glyph in glyphs:
        pictures += [_glyph_picture(glyph, rng, shrink=False), _glyph_picture(glyph, rng, shrink=True)]
    counts["emoji"] = len(pictures)
    files = clipart_files()
    if files and cfg.clipart:
        chosen = [f for i, f in enumerate(files) if i % HOLDOUT_EVERY]  # every 20th file is held out
        made = [clipart_picture(f, rng) for f in rng.sample(chosen, min(cfg.clipart, len(chosen)))]
        made = [p for p in made if p is not None]
        pictures += made
        counts["clipart"] = len(made)
    pictures += [procedural_picture(rng) for _ in range(cfg.procedural)]
    counts["procedural"] = cfg.procedural
    return to_tensor(pictures), counts


def heldout_pictures(emoji: int = 48, clipart: int = 24, procedural: int = 24,
                     seed: int = 1) -> dict[str, torch.Tensor]:
    """Pictures no training run sees, by source: uint8 [N, 3, 136, 136] each (empty sources left out)."""
    rng = random.Random(seed)
    out = {}
    glyphs = emoji_glyphs(heldout=True)
    if emoji and glyphs:
        glyphs = [glyphs[i * len(glyphs) // emoji] for i in range(min(emoji, len(glyphs)))]
        out["emoji"] = to_tensor([_composite(g.resize((HR, HR), Image.LANCZOS), DARK) for g in glyphs])
    files = [f for i, f in enumerate(clipart_files()) if i % HOLDOUT_EVERY == 0]
    made = []
    for f in files:
        if len(made) >= clipart:
            break
        picture = clipart_picture(f, rng)
        if picture is not None:
            made.append(picture)
    if made:
        out["clipart"] = to_tensor(made)
    if procedural:
        prng = random.Random(10_000 + seed)  # other pictures than any training seed below 10000 draws
        out["procedural"] = to_tensor([procedural_picture(prng) for _ in range(procedural)])
    return out


@torch.inference_mode()
def generator_frames(generator: str | Path | torch.nn.Module, n: int, seed: int) -> torch.Tensor:
    """`n` frames of a generator (a module, or a model file), uint8 [n, 3, R, R]: latents N(0, I) scaled by psi
    in [0.5, 1] (as shows walk), seeded so held-out frames (another seed) are other latents."""
    if not isinstance(generator, torch.nn.Module):
        generator, _ = checkpoint.load(generator)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator.z_dim, generator=gen) * (0.5 + 0.5 * torch.rand(n, 1, generator=gen))
    frames = torch.cat([generator(chunk).clamp(0, 1) for chunk in z.split(64)])
    return (frames * 255).round().to(torch.uint8)


# -- degradation, loss, measure ---------------------------------------------------------------------

def _gaussian_kernels(sigma: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """sigma [B] -> normalised kernels [B, 2r+1, 2r+1] (sigma ~0 is the identity)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-x[None] ** 2 / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))  # [B, k]
    k = g[:, :, None] * g[:, None, :]
    return k / k.sum((1, 2), keepdim=True)


def downscale(hr: torch.Tensor, scale: int, mode: str) -> torch.Tensor:
    """[B, 3, H, W] -> [B, 3, H/scale, W/scale] by `area`, `bicubic` or `bilinear` (both antialiased)."""
    if mode == "area":
        return F.avg_pool2d(hr, scale)
    size = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    return F.interpolate(hr, size=size, mode=mode, antialias=True, align_corners=False).clamp(0, 1)


def degrade(hr: torch.Tensor, scale: int, max_blur: float, max_noise: float,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """High-resolution batch [B, 3, H, W] in [0, 1] -> low-resolution [B, 3, H/s, W/s] in [0, 1]."""
    b, c, h, w = hr.shape
    sigma = torch.rand(b, generator=generator) * max_blur
    kernels = _gaussian_kernels(sigma).repeat_interleave(c, 0)[:, None]  # [B*3, 1, 7, 7]
    x = F.conv2d(F.pad(hr.reshape(1, b * c, h, w), (3, 3, 3, 3), mode="reflect"), kernels, groups=b * c)
    x = x.reshape(b, c, h, w)
    modes = torch.randint(0, 3, (b,), generator=generator)
    lr = torch.empty(b, c, h // scale, w // scale)
    for i, mode in enumerate(("area", "bicubic", "bilinear")):
        pick = modes == i
        if pick.any():
            lr[pick] = downscale(x[pick], scale, mode)
    noise = torch.rand(b, 1, 1, 1, generator=generator) * max_noise
    noise = noise * (torch.rand(b, 1, 1, 1, generator=generator) < 0.5)
    return (lr + noise * torch.randn(lr.shape, generator=generator)).clamp(0, 1)


def sr_loss(sr: torch.Tensor, hr: torch.Tensor, edge_weight: float, margin: int = 0,
            margin_weight: float = 1.0) -> torch.Tensor:
    """L1 on pixels plus `edge_weight` x L1 on horizontal and vertical differences. Pixels within
    `margin` of the crop's edge count `margin_weight` as much: there the net's zero padding makes its
    start wrong (see `start_as_bilinear`), and at full weight those errors would teach it to drop
    the interpolation everywhere before it learns the border."""
    h, w = hr.shape[-2:]
    weight = hr.new_full((h, w), margin_weight)
    weight[margin:h - margin, margin:w - margin] = 1
    loss = ((sr - hr).abs() * weight).mean() / weight.mean()
    if edge_weight:
        inner = (Ellipsis, slice(margin, h - margin), slice(margin, w - margin))
        sr, hr = sr[inner], hr[inner]
        dx = (sr.diff(dim=-1) - hr.diff(dim=-1)).abs().mean()
        dy = (sr.diff(dim=-2) - hr.diff(dim=-2)).abs().mean()
        loss = loss + edge_weight * (dx + dy)
    return loss


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image [B], in dB, for pictures in [0, 1]."""
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def bicubic_upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


@torch.no_grad()
def compare(net: torch.nn.Module, pictures: torch.Tensor, scale: int = 4) -> tuple[float, float]:
    """Mean PSNR (model, bicubic) over uint8 pictures [N, 3, H, W], each shrunk x`scale` by
    antialiased bicubic (no blur, no noise) and brought back. H, W are cropped to multiples of scale."""
    h, w = pictures.shape[-2:]
    hr = pictures[..., :h - h % scale, :w - w % scale].float() / 255
    lr = downscale(hr, scale, "bicubic")
    was_training = net.training
    net.eval()
    ours = torch.cat([net(lr[i:i + 16]) for i in range(0, len(lr), 16)])
    net.train(was_training)
    return psnr(ours, hr).mean().item(), psnr(bicubic_upscale(lr, scale), hr).mean().item()


@torch.no_grad()
def start_as_bilinear(net: SRVGGNetCompact) -> None:
    """Set an untrained net to compute bilinear upscaling (away from its outer pixel), so training
    starts from a fair upscaler rather than noise (from scratch, a compact net spends its first
    thousand steps below bicubic).
    Features 0..2 carry the picture through the body unchanged (identity kernels; the input is >= 0,
    where PReLU is the identity); the last conv turns them into bilinear's difference from the
    nearest-neighbour upscale the net adds; the other features start unheard (zero weights there)."""
    s, c = net.scale, net.config["num_in_ch"]
    convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
    for conv in convs[:-1]:
        conv.weight[:c] = 0
        conv.bias[:c] = 0
        for i in range(c):
            conv.weight[i, i, 1, 1] = 1
        # the other features see only change: zero-sum kernels and no bias answer 0 on flat colour,
        # so flat areas (most of a GAN frame) start exact instead of carrying noise to unlearn
        conv.weight[c:] -= conv.weight[c:].mean((2, 3), keepdim=True)
        conv.bias[c:] = 0
    # bilinear (align_corners=False): sub-pixel k of s sits (k + 0.5) / s - 0.5 pixels off the centre
    taps = torch.zeros(s, 3)  # weights of the neighbours at -1, 0, +1
    for k in range(s):
        d = (k + 0.5) / s - 0.5
        taps[k, 1] = 1 - abs(d)
        taps[k, 0 if d < 0 else 2] = abs(d)
    nearest = torch.zeros(3, 3)
    nearest[1, 1] = 1
    last = convs[-1]
    last.weight.zero_()
    last.bias.zero_()
    for ch in range(c):
        for ky in range(s):
            for kx in range(s):
                last.weight[ch * s * s + ky * s + kx, ch] = torch.outer(taps[ky], taps[kx]) - nearest


# -- the trainer -----------------------------------------------------------------------------------

class SRTrainer:
    def __init__(self, cfg: SRTrainConfig, pictures: torch.Tensor | None = None,
                 heldout: dict[str, torch.Tensor] | None = None):
        """`pictures` (uint8 [N, 3, H, W], H and W >= patch * scale) and `heldout` replace the built-in
        data sets (tests use tiny ones)."""
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if pictures is None:
            pictures, self.counts = training_pictures(cfg)
        else:
            self.counts = {"given": len(pictures)}
        self.pictures = pictures
        self.heldout = heldout if heldout is not None else heldout_pictures()
        self.frames = None
        if cfg.generator:
            generator, _ = checkpoint.load(cfg.generator)
            self.frames = generator_frames(generator, cfg.generator_frames, cfg.seed)
            self.counts["generator frames"] = len(self.frames)
            self.heldout = {**self.heldout, "generator frames": generator_frames(generator, 64, 10_000 + cfg.seed)}
        print(f"data: {self.counts} ({len(pictures)} pictures), held out: "
              f"{ {k: len(v) for k, v in self.heldout.items()} }, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        self.net = SRVGGNetCompact(num_feat=cfg.num_feat, num_conv=cfg.num_conv, scale=cfg.scale)
        if cfg.init:
            from engine.filters.superres import SuperResError, load_sr

            start, _ = load_sr(cfg.init, "superres-compact")
            if start.config != self.net.config:
                raise SuperResError(f"{cfg.init}: not an SR net of this size and scale ({start.config}, asked for "
                                    f"{self.net.config})")
            self.net.load_state_dict(start.state_dict())
        else:
            start_as_bilinear(self.net)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        self.step = 0
        self.seconds = 0.0  # training wall time over all runs
        self.log: list[dict] = []
        self._resume()

    def _resume(self) -> None:
        path = self.out / "state.pt"
        if not path.exists():
            return
        state = torch.load(path, weights_only=True)  # our own file; still nothing unpickled runs
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self.log = json.loads(state["log"])
        torch.set_rng_state(state["rng"])
        print(f"resumed {path} at step {self.step}", file=sys.stderr)

    def learning_rate(self, step: int) -> float:
        """Linear warm-up, then cosine decay to 1% (a function of the step, so resuming needs no state)."""
        cfg = self.cfg
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(low-res [B, 3, p, p], high-res [B, 3, s*p, s*p]): random crops, flips and quarter turns."""
        cfg = self.cfg
        side = cfg.patch * cfg.scale
        n, _, h, w = self.pictures.shape
        idx = torch.randint(0, n, (cfg.batch,))
        ys = torch.randint(0, h - side + 1, (cfg.batch,))
        xs = torch.randint(0, w - side + 1, (cfg.batch,))
        hr = torch.stack([self.pictures[i, :, y:y + side, x:x + side] for i, y, x in zip(idx, ys, xs)]).float() / 255
        if torch.rand(()) < 0.5:
            hr = hr.flip(-1)
        hr = torch.rot90(hr, int(torch.randint(0, 4, ())), (-2, -1))
        return degrade(hr, cfg.scale, cfg.max_blur, cfg.max_noise), hr

    def train_step(self) -> dict:
        for group in self.opt.param_groups:
            group["lr"] = self.learning_rate(self.step)
        cfg = self.cfg
        lr, hr = self.batch()
        loss = sr_loss(self.net(lr), hr, cfg.edge_weight, cfg.scale, cfg.margin_weight)
        if self.frames is not None:  # the generator's frames as their own targets
            hr = self.frames[torch.randint(0, len(self.frames), (cfg.generator_batch,))].float() / 255
            if torch.rand(()) < 0.5:
                hr = hr.flip(-1)
            lr = degrade(hr, cfg.scale, cfg.max_blur, cfg.max_noise)
            loss = loss + cfg.generator_weight * sr_loss(self.net(lr), hr, cfg.edge_weight, cfg.scale,
                                                         cfg.margin_weight)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        return {"step": self.step, "loss": loss.item()}

    def evaluate(self) -> dict:
        """PSNR of the model and of bicubic on each held-out set, dB."""
        result = {}
        for name, pictures in self.heldout.items():
            ours, bicubic = compare(self.net, pictures, self.cfg.scale)
            result[name] = {"model": round(ours, 2), "bicubic": round(bicubic, 2)}
        return result

    def provenance(self, evaluation: dict) -> dict:
        cfg = self.cfg
        via_cli = len(sys.argv) > 1 and sys.argv[1] == "train-sr"
        argv = sys.argv[2:] if via_cli else sys.argv[1:]
        extra = {"generator": cfg.generator, "generator_weight": cfg.generator_weight} if cfg.generator else {}
        extra |= {"init": cfg.init} if cfg.init else {}
        return {"dataset": f"high-resolution 136 px pictures: {self.counts}", **extra, "steps": self.step,
                "batch": cfg.batch, "patch": f"{cfg.patch} -> {cfg.patch * cfg.scale}",
                "training_seconds": round(self.seconds), "heldout_psnr": evaluation, "licence": LICENCE,
                "trainer": "engine.training.superres (L1 + edge L1, blur/downscale/noise degradation)",
                "command": ("masquerade train-sr " if via_cli else "python -m engine.training.superres ")
                + " ".join(shlex.quote(a) for a in argv)}

    def snapshot(self) -> Path:
        evaluation = self.evaluate()
        self.log.append({"step": self.step, "eval": evaluation})
        print(f"step {self.step}: held-out PSNR {evaluation}", file=sys.stderr)
        path = self.out / f"sr-x{self.cfg.scale}-{self.step:06d}.safetensors"
        checkpoint.save(self.net, "superres-compact", path, self.provenance(evaluation))
        state = {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
                 "seconds": self.seconds, "log": json.dumps(self.log), "rng": torch.get_rng_state(),
                 "config": json.dumps(asdict(self.cfg))}
        tmp = self.out / "state.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.out / "state.pt")
        return path

    def run(self) -> Path:
        cfg = self.cfg
        last, running, t0 = None, [], time.perf_counter()
        while self.step < cfg.steps:
            start = time.perf_counter()
            stats = self.train_step()
            self.seconds += time.perf_counter() - start
            running.append(stats["loss"])
            if self.step % cfg.log_every == 0:
                entry = {"step": self.step, "loss": round(sum(running) / len(running), 5),
                         "lr": self.learning_rate(self.step), "seconds": round(self.seconds, 1)}
                self.log.append(entry)
                running = []
                print(json.dumps(entry), file=sys.stderr, flush=True)
            if self.step % cfg.snapshot_every == 0 or self.step == cfg.steps:
                last = self.snapshot()
        print(f"{self.step} steps, this run {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return last or self.snapshot()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.training.superres",
                                description="Train the x4 super-resolution filter (Real-ESRGAN compact layout).")
    defaults = SRTrainConfig(out="")
    p.add_argument("--out", required=True, help="run folder: snapshots and state.pt (resumes from it)")
    for name, value in asdict(defaults).items():
        if name != "out":
            p.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = SRTrainConfig(**vars(args))
    path = SRTrainer(cfg).run()
    print(f"latest snapshot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
