"""Ship a training snapshot: the model file into `assets/models/` with provenance, a 1080p contact sheet into
`docs/`, and a 10 s clip rendered by `masquerade render` from a show that points at the shipped file.

    .venv/bin/python -m engine.training.export training-runs/emoji128-fastgan/generator-004000.safetensors \\
        --name emoji128

writes `assets/models/emoji128.safetensors` (the EMA generator, its provenance extended by the snapshot it
came from and that file's sha256), `assets/models/emoji128-discriminator.safetensors` (for fine-tuning),
`docs/emoji128-contact-sheet.png` (1920x1080: 5 rows of samples, 3 rows of slerp walks, a caption),
`<run>/show-emoji128.toml` and `docs/emoji128-10s.mp4`. `--no-clip` skips the render. Nothing is committed.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from engine.contact_sheet import contact_sheet
from engine.generators import checkpoint
from engine.show import PROJECT_ROOT
from engine.training import emoji, nets

SHEET = (1920, 1080)
COLUMNS, SAMPLE_ROWS, WALK_ROWS = 15, 5, 3


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_model(snapshot: Path, out: Path) -> dict:
    """The snapshot's generator (and the discriminator beside it) re-saved as `out`, provenance extended."""
    generator, card = checkpoint.load(snapshot)
    prov = {**card.provenance, "exported_from": str(snapshot), "exported_from_sha256": sha256(snapshot),
            "exported": datetime.date.today().isoformat(), "model_card": f"assets/models/{out.stem}.md"}
    checkpoint.save(generator, card.architecture, out, prov)
    d_path = nets.discriminator_beside(snapshot)
    if d_path is not None:
        D, d_arch = nets.load_discriminator(d_path)
        checkpoint.save(D, d_arch, out.with_name(f"{out.stem}-discriminator.safetensors"),
                        {**prov, "exported_from": str(d_path), "exported_from_sha256": sha256(d_path)})
    return prov


def sheet_1080p(model: Path, seed: int = 0) -> Image.Image:
    """Samples (psi 0.8) above, slerp walks below, scaled to fit 1920x1080 with a one-line caption."""
    generator, card = checkpoint.load(model)
    grid = contact_sheet(generator, seed=seed, columns=COLUMNS, sample_rows=SAMPLE_ROWS, walk_rows=WALK_ROWS,
                         scale=1)
    caption_h = 40
    scale = min(SHEET[0] / grid.width, (SHEET[1] - caption_h) / grid.height)
    grid = grid.resize((round(grid.width * scale), round(grid.height * scale)), Image.LANCZOS)
    canvas = Image.new("RGB", SHEET, emoji.BACKGROUND)
    canvas.paste(grid, ((SHEET[0] - grid.width) // 2, 0))
    p = card.provenance
    text = (f"{model.stem}: {card.architecture} {generator.resolution} px, {card.parameters:,} parameters, "
            f"{p.get('steps', '?')} steps, {p.get('kimg', '?')} kimg | rows 1-{SAMPLE_ROWS}: samples (psi 0.8), "
            f"rows {SAMPLE_ROWS + 1}-{SAMPLE_ROWS + WALK_ROWS}: slerp walks | seed {seed}")
    font = ImageFont.load_default(size=22)
    ImageDraw.Draw(canvas).text((16, SHEET[1] - caption_h + 8), text, fill=(200, 200, 210), font=font)
    return canvas


def write_show(model: Path, path: Path, name: str) -> Path:
    bg = ", ".join(f"{c / 255:.3f}" for c in emoji.BACKGROUND)
    path.write_text(f'''# {name}: an endless walk through {model.name} (written by engine.training.export)
name = "{name}"

[model]
path = "{model.resolve()}"

[walk]
kind = "keyframes"
seed = 2026
keyframes = 12
seconds_per_keyframe = 3.0
truncation = 0.8
easing = "smooth"

[output]
size = [1920, 1080]
fps = 30
fit = "contain"
upscale = "lanczos"
background = [{bg}]
''', encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.training.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("snapshot", type=Path, help="a run's generator-NNNNNN.safetensors")
    ap.add_argument("--name", required=True, help="the shipped model's name: assets/models/NAME.safetensors")
    ap.add_argument("--models", type=Path, default=PROJECT_ROOT / "assets" / "models")
    ap.add_argument("--docs", type=Path, default=PROJECT_ROOT / "docs")
    ap.add_argument("--seed", type=int, default=0, help="the contact sheet's latents")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--no-clip", action="store_true", help="skip the 10 s render")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)

    model = args.models / f"{args.name}.safetensors"
    prov = export_model(args.snapshot, model)
    print(f"wrote {model} (step {prov.get('steps')}, {prov.get('kimg')} kimg)")
    sheet = args.docs / f"{args.name}-contact-sheet.png"
    sheet_1080p(model, args.seed).save(sheet)
    print(f"wrote {sheet}")
    if not args.no_clip:
        show = write_show(model, args.snapshot.parent / f"show-{args.name}.toml", args.name)
        clip = args.docs / f"{args.name}-{args.seconds:g}s.mp4"
        cmd = [sys.executable, "-m", "engine.cli", "render", str(show), "-o", str(clip), "--seconds",
               f"{args.seconds:g}", "-q"]
        print("$ masquerade " + " ".join(cmd[3:]))
        subprocess.run(cmd, cwd=PROJECT_ROOT, check=True)
        print(f"wrote {clip}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
