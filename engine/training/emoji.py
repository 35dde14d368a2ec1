"""The default model's data set: Noto Color Emoji glyphs (SIL OFL 1.1), from Debian's
`fonts-noto-color-emoji`, composited onto a dark gallery background.

The font's CBDT table stores every glyph (ZWJ sequences, skin tones and flags included: ~3,900) as a
PNG bitmap; reading those directly needs no text shaping and gives every glyph once.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
BACKGROUND = (14, 14, 18)


def glyph_images(font_path: Path = FONT):
    """Yield (glyph name, RGBA image) for every colour bitmap in the font's largest strike."""
    from fontTools.ttLib import TTFont  # training-only dependency

    if not font_path.is_file():
        raise FileNotFoundError(f"{font_path}: install Debian's fonts-noto-color-emoji")
    font = TTFont(str(font_path))
    strikes = font["CBDT"].strikeData
    for name, bitmap in max(strikes, key=len).items():
        bitmap.decompile()
        data = getattr(bitmap, "imageData", None)
        if data:
            yield name, Image.open(io.BytesIO(data)).convert("RGBA")


def build(out_dir: str | Path, size: int = 64, margin: float = 0.08) -> int:
    """Write one `size`x`size` PNG per glyph into `out_dir`; returns how many were written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inner = round(size * (1 - 2 * margin))
    count = 0
    for name, glyph in glyph_images():
        glyph.thumbnail((inner, inner), Image.LANCZOS)
        canvas = Image.new("RGBA", (size, size), BACKGROUND + (255,))
        canvas.alpha_composite(glyph, ((size - glyph.width) // 2, (size - glyph.height) // 2))
        canvas.convert("RGB").save(out_dir / f"{count:05d}_{name[:40]}.png")
        count += 1
    return count
