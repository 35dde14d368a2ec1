"""`masquerade train-style --image my.jpg -o my-style.safetensors`: a style for the `style` filter from any
picture, in a few minutes on a CPU. Never imported live.

The network and the losses are those of `engine/training/style.py` (a narrow TransformerNet fitted with
Johnson, Alahi and Fei-Fei's perceptual losses, the project's emoji discriminator standing in for VGG-16);
what differs is the scale. The shipped style was fitted to 64 px frames; here the content is what a
`style` row sees in the default show, 256 px frames (generator 64 px -> the shipped x4 super-resolution
-> the show's grade, `shows/default.toml` run through its own frame path), and the discriminator's four
layers only see 46 px at most. So its features are read on a two-level pyramid (the picture, and the
picture at half size: up to 92 px of a 256 px frame), and the network trains on random 128 px crops of
the frames (a quarter of the arithmetic of whole frames, same pixel scale, so the same style at 256 px).

Loss network, decided (docs/models.md, "Training a style from a picture"): the emoji discriminator is the
only trained feature network Masquerade ships and nothing is downloaded. Its first two layers are generic
colour-edge detectors at 2 and 4 px strides; its last two were tuned to emoji. Matched as Gram matrices on
the pyramid, plus the Gram matrix of the RGB pixels, it transfers a picture's palette, its contrast and the
grain and direction of its strokes and edges up to ~90 px; it does not know objects (no eyes of a portrait,
no houses of a town), which VGG's deep layers would bring. The alternatives at hand are worse: a random
network (no training) keeps no content, and the super-resolution net (`sr-emoji-x4`) has no deep features.

Loss = content_weight * MSE(D1(y), D1(x)) / mean(D1(x)^2)                       (D1: layer 1, full size)
     + style_weight * sum_{levels, layers} MSE(gram(D_l(y)), G_l) / mean(G_l^2)
     + rgb_weight * MSE(gram(y), G_rgb) / mean(G_rgb^2) + tv_weight * total variation(y),
x a content crop, y = net(x), G the style image's Gram matrices (the style picture resized so that its
shorter side is the content size: its strokes keep their size relative to the frame).

Writes OUT (beside, then renamed: never half-written under its name), OUT's stem + `-sheet.png` (the style
image; content frames over the same frames styled) and `.md` (a model card).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.errors import MasqueradeError

ROOT = Path(__file__).resolve().parent.parent.parent
MODELS = ROOT / "assets" / "models"
DEFAULT_SHOW = ROOT / "shows" / "default.toml"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MIN_SIDE = 64  # a style image smaller than this has too little texture to read
MAX_PIXELS = 64_000_000  # refused before decoding: 64 megapixels is 192 MB of RGB


class StyleImageError(MasqueradeError):
    """A picture that cannot be used; one line naming the file."""


@dataclass
class StyleConfig:
    image: str
    out: str
    size: int = 256  # content frames are size x size: the pixel scale the filter will see
    crop: int = 128  # training crops of the frames (multiple of 4; at most size)
    minutes: float | None = 5.0  # None: no time limit (then steps)
    steps: int | None = None  # None: until minutes
    content: str = ""  # a folder of the user's images; "": frames of the default show
    frames: int = 64  # content frames made or read
    batch: int = 4
    lr: float = 2e-3
    width: int = 16
    blocks: int = 5
    content_weight: float = 1.0
    style_weight: float = 2.0
    rgb_weight: float = 1.0
    tv_weight: float = 0.2
    jitter: int = 3
    levels: int = 2  # the loss network reads the picture at 1, 1/2, ... size
    pick: int = 1  # each crop the busiest of this many random ones (less flat background)
    seed: int = 0
    threads: int = 1  # 0: PyTorch's default (all cores; slower than 1 on a busy machine)
    preview: int = 4  # content frames on the sheet
    command: str = ""
    extra: dict = field(default_factory=dict)


# --- the pictures ------------------------------------------------------------------------------------

def _open(path: Path):
    """The image, opened (header read, pixels not yet decoded); refusals name the file."""
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise StyleImageError(f"{path}: no such file")
    if not path.is_file():
        raise StyleImageError(f"{path}: not a file")
    try:
        image = Image.open(path)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as e:
        reason = "not an image Pillow can read (PNG, JPEG, WebP, ...)" if isinstance(e, UnidentifiedImageError) \
            else f"unreadable ({e})"
        raise StyleImageError(f"{path}: {reason}") from None
    return image


def read_picture(path: str | Path, short_side: int, max_long: int | None = None):
    """An image file -> float tensor [1, 3, h, w] in [0, 1] whose shorter side is `short_side` (Lanczos;
    JPEGs are decoded at a reduced scale first, so memory stays bounded by the target size, not the
    file's), its longer side centre-cropped to `max_long`. Transparent pixels go over black.
    Refused in one line naming the file: missing, not an image, smaller than MIN_SIDE, over MAX_PIXELS,
    damaged."""
    import numpy as np
    import torch
    from PIL import Image

    path = Path(path)
    image = _open(path)
    with image:
        w, h = _usable_size(path, *image.size)
        try:
            scale = short_side / min(w, h)
            image.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))  # a JPEG decodes at 1/2..1/8 size
            image.seek(0)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
            image = image.convert("RGB")
            w, h = image.size
            scale = short_side / min(w, h)
            size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))
            image = image.resize(size, Image.LANCZOS, reducing_gap=3.0)
        except (OSError, ValueError, SyntaxError) as e:  # truncated or damaged pixel data
            raise StyleImageError(f"{path}: damaged image ({e})") from None
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    if max_long:
        _, _, H, W = pixels.shape
        y, x = max(0, (H - max_long) // 2), max(0, (W - max_long) // 2)
        pixels = pixels[..., y:y + max_long, x:x + max_long]
    return pixels.contiguous()


def check_style_image(path: str | Path) -> tuple[int, int]:
    """(width, height) of a usable style image, reading only its header; else StyleImageError."""
    path = Path(path)
    with _open(path) as image:
        return _usable_size(path, *image.size)


def _usable_size(path: Path, w: int, h: int) -> tuple[int, int]:
    if min(w, h) < MIN_SIDE:
        raise StyleImageError(f"{path}: {w}x{h} pixels is too small for a style image "
                              f"(at least {MIN_SIDE} px on the shorter side)")
    if w * h > MAX_PIXELS:
        raise StyleImageError(f"{path}: {w}x{h} pixels is too large (over {MAX_PIXELS // 1_000_000} megapixels); "
                              "scale it down first")
    return w, h


def show_frames(count: int, size: int, seed: int, show: Path = DEFAULT_SHOW):
    """[count, 3, size, size] in [0, 1]: frames of `show` (the default: emoji GAN -> x4 super-resolution ->
    grade, 256 px) at random latents, through the show's own frame path, resized (bicubic) when `size`
    is not its work size: what a `style` row added to that show is given."""
    import torch

    from engine import show as shows
    from engine.frame import Tick
    from engine.frame_path import fit
    from engine.pipeline import Pipeline

    pipeline = Pipeline(shows.load(show), "cpu")
    rng = torch.Generator().manual_seed(seed)
    frames = []
    for i in range(count):
        z = torch.randn(1, pipeline.generator.z_dim, generator=rng)
        image = pipeline.generate(Tick(i, 0.0), z=z).image
        frames.append(fit(image, (size, size), "cover"))
    return torch.cat(frames)


def folder_frames(folder: str | Path, count: int, size: int, seed: int):
    """[n, 3, size, size]: up to `count` pictures of a folder (sorted, then a seeded sample when there
    are more), each resized to `size` on its shorter side and centre-cropped square. Unreadable files
    are skipped; a folder with no usable picture is refused naming it."""
    import random

    import torch

    folder = Path(folder)
    if not folder.is_dir():
        raise StyleImageError(f"{folder}: no such folder (--content wants a folder of pictures)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    random.Random(seed).shuffle(files)
    frames, skipped = [], 0
    for path in files:
        if len(frames) == count:
            break
        try:
            frames.append(read_picture(path, size, max_long=size))
        except StyleImageError:
            skipped += 1
    if not frames:
        raise StyleImageError(f"{folder}: no usable pictures (PNG, JPEG, ... at least {MIN_SIDE} px a side)")
    if skipped:
        print(f"--content: skipped {skipped} unreadable or too small files in {folder}", file=sys.stderr)
    return torch.cat(frames)


# --- the losses ---------------------------------------------------------------------------------------

class LossNetwork:
    """The shipped emoji discriminator's four activations, read on a pyramid of `levels` sizes (1, 1/2, ...)."""

    def __init__(self, levels: int = 2, path: Path = MODELS / "emoji64-discriminator.safetensors"):
        from engine.generators import checkpoint

        self.net, _ = checkpoint.load(path)
        self.levels = levels

    def __call__(self, x):
        import torch.nn.functional as F

        out = []
        for level in range(self.levels):
            out += self.net.features(x if level == 0 else F.avg_pool2d(x, 2 ** level), depth=4)
        return out  # levels x 4 tensors; out[1]: layer 1 at full size (the content layer)


def train(cfg: StyleConfig, progress: bool = True) -> dict:
    """Train; write OUT, its sheet and its card; return the provenance. Ctrl-C (SIGINT) ends training after
    the step under way and saves it (a second Ctrl-C gives up at once, writing nothing); the
    provenance then says `interrupted`."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from engine.filters.style import TransformerNet
    from engine.training.style import gram, total_variation

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    crop = max(4, min(cfg.crop, cfg.size) // 4 * 4)
    style = read_picture(cfg.image, cfg.size, max_long=4 * cfg.size)  # [1, 3, h, w]
    if cfg.content:
        frames = folder_frames(cfg.content, cfg.frames, cfg.size, cfg.seed)
        content_name = f"{len(frames)} pictures of {cfg.content}, {cfg.size} px squares"
    else:
        frames = show_frames(cfg.frames, cfg.size, cfg.seed)
        content_name = (f"{len(frames)} frames of {DEFAULT_SHOW.relative_to(ROOT)} at random latents (emoji GAN -> "
                        f"x4 super-resolution -> grade), {cfg.size} px")
    frames = (frames * 255).round().to(torch.uint8)  # a quarter of the memory
    loss_net = LossNetwork(cfg.levels)
    with torch.no_grad():
        style_grams = [gram(f) for f in loss_net(style)] + [gram(style)]
        scales = [g.pow(2).mean().clamp_min(1e-12) for g in style_grams]
    net = TransformerNet(width=cfg.width, blocks=cfg.blocks)
    with torch.no_grad():  # start from the picture's mean colour, not black: the palette comes in a few steps
        net.deconv3.conv2d.bias.copy_(style.mean(dim=(0, 2, 3)) * 255)
    opt = torch.optim.Adam(net.parameters(), cfg.lr)
    seconds_limit = math.inf if cfg.minutes is None else cfg.minutes * 60
    steps_limit = cfg.steps or math.inf

    stop = {"asked": False}

    def on_sigint(signum, frame):
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True

    if steps_limit < math.inf:
        bar = tqdm(total=int(steps_limit), unit="step", disable=not progress, dynamic_ncols=True)
    else:
        bar = tqdm(total=round(seconds_limit), unit="s", disable=not progress, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s{postfix}")
    previous = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None
    try:
        start, cpu_start, step, skipped, history, running = time.monotonic(), time.process_time(), 0, 0, [], []
        while step < steps_limit and not stop["asked"]:
            elapsed = time.monotonic() - start
            if elapsed >= seconds_limit:
                break
            done = max(step / steps_limit, elapsed / seconds_limit)
            for group in opt.param_groups:  # a quarter of the rate for the last quarter
                group["lr"] = cfg.lr if done < 0.75 else cfg.lr / 4
            x = _batch(frames, cfg.batch, crop, cfg.pick)
            with torch.no_grad():
                shift = tuple(int(v) for v in torch.randint(0, cfg.jitter + 1, (2,)))
                target = loss_net.net.features(x.roll(shift, dims=(2, 3)), depth=2)[1]
                content_scale = target.pow(2).mean().clamp_min(1e-12)
            y = net(x * 255) / 255
            # the loss network sees both at one random phase of its stride-2 grid (wrapped), so a texture
            # locked to that grid is not a cheap way to match its Gram matrices
            fy = loss_net(y.roll(shift, dims=(2, 3)))
            content = F.mse_loss(fy[1], target) / content_scale
            style_loss = sum(F.mse_loss(gram(f), g.expand(len(y), -1, -1)) / n
                             for f, g, n in zip(fy, style_grams, scales))
            rgb = F.mse_loss(gram(y), style_grams[-1].expand(len(y), -1, -1)) / scales[-1]
            loss = (cfg.content_weight * content + cfg.style_weight * style_loss + cfg.rgb_weight * rgb
                    + cfg.tv_weight * total_variation(y))
            if not torch.isfinite(loss):  # keep the last good weights; give up if it keeps happening
                skipped += 1
                if skipped > 20:
                    raise StyleImageError(f"{cfg.image}: the loss is not finite; try a smaller --lr")
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            running.append((loss.item(), content.item(), style_loss.item(), rgb.item()))
            if step % 25 == 0:
                mean = [sum(v) / len(v) for v in zip(*running)]
                running = []
                history.append(dict(step=step, seconds=round(time.monotonic() - start, 1), loss=round(mean[0], 4),
                                    content=round(mean[1], 4), style=round(mean[2], 4), rgb=round(mean[3], 5)))
            if steps_limit < math.inf:
                bar.update(1)
            else:
                bar.n = min(bar.total, time.monotonic() - start)
            bar.set_postfix_str(f"step={step} loss={loss.item():.3f}", refresh=True)
        bar.close()
        seconds, cpu_seconds = time.monotonic() - start, time.process_time() - cpu_start
        if step == 0:
            raise KeyboardInterrupt if stop["asked"] else StyleImageError(f"{cfg.image}: no training step ran")
        net.eval().requires_grad_(False)
        provenance = dict(
            style_image=str(cfg.image), style_image_size=f"{style.shape[-1]}x{style.shape[-2]} (as used)",
            content=content_name, crop=crop,
            loss_network=f"assets/models/emoji64-discriminator.safetensors features (4 layers, at "
                         f"{', '.join(f'1/{2 ** i}' for i in range(cfg.levels))} size) + RGB Gram",
            loss=dict(content_weight=cfg.content_weight, style_weight=cfg.style_weight, rgb_weight=cfg.rgb_weight,
                      tv_weight=cfg.tv_weight, jitter=cfg.jitter),
            steps=step, batch=cfg.batch, lr=cfg.lr, seconds=round(seconds, 1),
            seconds_per_step=round(seconds / step, 3), cpu_seconds_per_step=round(cpu_seconds / step, 3),
            threads=torch.get_num_threads(), load_average=round(os.getloadavg()[0], 1),
            interrupted=stop["asked"], final=history[-1] if history else {},
            trainer="engine.training.style_image (Johnson et al. perceptual losses, emoji-discriminator features)",
            licence="as the style image's; the network adds nothing of anyone else's",
            command=cfg.command,
        )
        write_model(net, out, provenance)
        sheet = out.with_name(out.stem + "-sheet.png")
        preview_frames = (show_frames(cfg.preview, cfg.size, cfg.seed + 10_000) if not cfg.content
                          else frames[:cfg.preview].float() / 255)
        _atomic(sheet, lambda tmp: preview_sheet(net, style, preview_frames).save(tmp, format="PNG"))
        card = out.with_suffix(".md")
        _atomic(card, lambda tmp: tmp.write_text(model_card(out, provenance, history)))
        provenance.update(sheet=str(sheet), card=str(card))
        return provenance
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _batch(frames, batch: int, crop: int, pick: int = 1):
    """[batch, 3, crop, crop] float in [0, 1]: random frames, random crops (each the busiest, by pixel standard
    deviation, of `pick` candidates), random horizontal flips."""
    import torch

    n, _, h, w = frames.shape
    idx = torch.randint(0, n, (batch * pick,)).tolist()
    ys = torch.randint(0, h - crop + 1, (batch * pick,)).tolist()
    xs = torch.randint(0, w - crop + 1, (batch * pick,)).tolist()
    x = torch.stack([frames[i, :, y:y + crop, x0:x0 + crop] for i, y, x0 in zip(idx, ys, xs)]).float() / 255
    if pick > 1:
        x = x.reshape(batch, pick, *x.shape[1:])
        best = x.flatten(2).std(dim=2).argmax(dim=1)
        x = x[torch.arange(batch), best]
    flip = torch.rand(batch, 1, 1, 1) < 0.5
    return torch.where(flip, x.flip(-1), x)


def _atomic(path: Path, write) -> None:
    """`write(tmp)` beside `path`, then rename: `path` is the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_model(net, out: Path, provenance: dict) -> None:
    from engine.generators import checkpoint

    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic(out, lambda tmp: checkpoint.save(net, "style-transformer", tmp, provenance))


def preview_sheet(net, style, frames):
    """A PIL image, tiles of the frames' size S: top row the style image (a centre square) then the content
    frames; bottom row blank then the same frames styled. (1 + n) S wide, 2 S high."""
    import torch
    from PIL import Image

    from engine.filters.style import stylise

    n, _, s, _ = frames.shape
    _, _, h, w = style.shape
    side = min(h, w)
    swatch = style[..., (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    swatch = torch.nn.functional.interpolate(swatch, size=(s, s), mode="bilinear", antialias=True,
                                             align_corners=False)[0].clamp(0, 1)
    styled = stylise(frames, net)
    blank = torch.full((3, s, s), 0.12)
    top = torch.cat([swatch, *frames], dim=-1)
    bottom = torch.cat([blank, *styled], dim=-1)
    grid = torch.cat([top, bottom], dim=-2)
    return Image.fromarray((grid.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy())


def model_card(out: Path, p: dict, history: list[dict]) -> str:
    final = p.get("final") or {}
    lines = [
        f"# {out.stem}: a style trained by `masquerade train-style`", "",
        f"A fast neural style network for the `style` filter. Before / after: `{out.stem}-sheet.png` (top: the "
        "style image, then content frames; bottom: the same frames styled).", "",
        "| | |", "| --- | --- |",
        f"| file | `{out.name}`, Masquerade model file (architecture `style-transformer`) |",
        f"| style image | `{p['style_image']}` ({p['style_image_size']}) |",
        f"| content | {p['content']}; random {p['crop']} px crops, batch {p['batch']} |",
        f"| loss network | {p['loss_network']} |",
        f"| loss weights | {', '.join(f'{k} {v}' for k, v in p['loss'].items())} |",
        f"| steps | {p['steps']:,}{' (interrupted with Ctrl-C)' if p['interrupted'] else ''} |",
        f"| minutes | {p['seconds'] / 60:.1f} of training: {p['seconds_per_step']} s a step wall, "
        f"{p['cpu_seconds_per_step']} s of CPU ({p['threads']} torch thread(s), load average {p['load_average']} "
        f"on {os.cpu_count()} cores) |",
        f"| final loss | {final.get('loss', '-')} (content {final.get('content', '-')}, "
        f"style {final.get('style', '-')}, RGB {final.get('rgb', '-')}), mean of the last 25 steps |"
        if final else "| final loss | - |",
        f"| command | `{p['command']}` |",
        f"| licence | {p['licence']} |", "",
        "Play it: add a row to a show (docs/show-files.md); it runs at the show's work size:", "",
        "```toml", "[[filters]]", 'kind = "style"', f'path = "{out.name}"  # relative to the show file',
        "blend = 1.0", "stabilise = 0.6", "```", "",
    ]
    return "\n".join(lines)


def command_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def main(argv: list[str] | None = None) -> None:
    """`python -m engine.training.style_image --image my.jpg -o my.safetensors` (the CLI's `train-style`)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--image", required=True)
    p.add_argument("-o", "--out", required=True)
    for name, value in asdict(StyleConfig("", "")).items():
        if name in ("image", "out", "command", "extra", "minutes", "steps"):
            continue
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--steps", type=int)
    args = p.parse_args(argv)
    cfg = StyleConfig(**vars(args), command="python -m engine.training.style_image "
                      + command_line(sys.argv[1:] if argv is None else argv))
    print(json.dumps(train(cfg), indent=2))


if __name__ == "__main__":
    main()
