"""A contact sheet of samples with their labels and boxes, for eyeballing the generator."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

from .common import font
from .labels import Sample


def contact_sheet(samples: Sequence[Sample], *, columns: int = 8, cell: tuple[int, int] = (240, 180)) -> Image.Image:
    """Tile ``samples`` (resized to ``cell``), outlining ``box`` in green and other boxes in magenta."""
    cw, ch = cell
    rows = max(1, -(-len(samples) // columns))
    sheet = Image.new("RGB", (columns * cw, rows * (ch + 26)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, s in enumerate(samples):
        x, y = (i % columns) * cw, (i // columns) * (ch + 26)
        sx, sy = cw / s.image.width, ch / s.image.height
        sheet.paste(s.image.resize(cell, Image.Resampling.BILINEAR), (x, y))
        for b in s.boxes:
            if b != s.box:
                draw.rectangle((x + b[0] * sx, y + b[1] * sy, x + b[2] * sx, y + b[3] * sy), outline=(255, 0, 255))
        if s.box:
            b = s.box
            draw.rectangle((x + b[0] * sx, y + b[1] * sy, x + b[2] * sx, y + b[3] * sy), outline=(0, 220, 0), width=2)
        first = " ".join(t for t in (s.image_type, s.color) if t) or "product"
        second = s.intent[:24] + (" / SENSITIVE" if s.sensitive == "sensitive" else "")
        draw.text((x + 3, y + ch + 1), first, font=font(11), fill=(0, 0, 0))
        draw.text((x + 3, y + ch + 13), second, font=font(10), fill=(90, 90, 90))
    return sheet
