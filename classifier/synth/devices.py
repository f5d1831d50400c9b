"""Tools, electronics and appliances, plus the weapon silhouettes that stand in for sensitive content."""

from __future__ import annotations

from PIL import Image, ImageDraw

from .colors import flat_color
from .common import RGB, Rand, mix, rounded, shade, vertical_gradient
from .goods import Drawer, fit, rect, shaded
from .vehicles import Quad


def _screen(img: Image.Image, rnd: Rand, box: Quad) -> None:
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return
    if rnd.chance(0.3):
        img.paste((15, 15, 20), (x0, y0, x1, y1))
        return
    a, b = flat_color(rnd), flat_color(rnd)
    img.paste(vertical_gradient((x1 - x0, y1 - y0), [(0.0, a), (1.0, b)]), (x0, y0))


def phone(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    w = box[2] - box[0]
    body = rnd.pick(((20, 20, 22), (230, 230, 232), (190, 180, 170), flat_color(rnd)))
    rounded(draw, box, radius=max(2, int(w * 0.15)), fill=body, outline=shade(body, 0.6))
    scr = rect(box, 0.07, 0.05, 0.93, 0.95)
    _screen(img, rnd, scr)
    for r in range(4):
        for c in range(4):
            cell = rect(scr, 0.1 + c * 0.21, 0.1 + r * 0.12, 0.24 + c * 0.21, 0.18 + r * 0.12)
            rounded(draw, cell, radius=2, fill=flat_color(rnd, light=True))


def laptop(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    body = rnd.pick(((180, 182, 188), (40, 40, 44), (210, 200, 190)))
    draw.rectangle(rect(box, 0.1, 0.0, 0.9, 0.72), fill=shade(body, 0.4))
    _screen(img, rnd, rect(box, 0.13, 0.04, 0.87, 0.68))
    shaded(img, fit(box, [(0.1, 0.74), (0.9, 0.74), (1.0, 1.0), (0.0, 1.0)]), body)
    for k in range(4):
        v = 0.78 + k * 0.045
        draw.line(fit(box, [(0.12 + k * 0.01, v), (0.88 - k * 0.01, v)]), fill=shade(body, 0.7), width=1)


def television(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    draw.rectangle(rect(box, 0.0, 0.0, 1.0, 0.85), fill=(18, 18, 20))
    _screen(img, rnd, rect(box, 0.02, 0.03, 0.98, 0.82))
    draw.polygon(fit(box, [(0.45, 0.85), (0.55, 0.85), (0.6, 0.97), (0.4, 0.97)]), fill=(40, 40, 44))
    draw.rectangle(rect(box, 0.3, 0.96, 0.7, 1.0), fill=(40, 40, 44))


def drill(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    color = rnd.pick(((240, 190, 0), (0, 120, 80), (200, 30, 30), (0, 90, 170), (230, 110, 20)))
    draw.line(fit(box, [(0.82, 0.27), (1.0, 0.27)]), fill=(170, 170, 175), width=max(2, int((box[3] - box[1]) * 0.03)))
    draw.rectangle(rect(box, 0.7, 0.18, 0.84, 0.36), fill=(50, 50, 50))
    shaded(
        img,
        fit(
            box,
            [(0.05, 0.1), (0.72, 0.1), (0.72, 0.45), (0.45, 0.45), (0.4, 0.8), (0.2, 0.8), (0.25, 0.45), (0.05, 0.4)],
        ),
        color,
    )
    draw.rectangle(rect(box, 0.12, 0.78, 0.5, 1.0), fill=(35, 35, 38))
    draw.rectangle(rect(box, 0.4, 0.45, 0.46, 0.55), fill=(30, 30, 30))


def washing_machine(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    body = rnd.pick(((240, 240, 240), (200, 200, 205), (60, 60, 65)))
    shaded(img, fit(box, [(0, 0), (1, 0), (1, 1), (0, 1)]), body)
    draw.rectangle(rect(box, 0.0, 0.0, 1.0, 0.16), fill=shade(body, 0.9), outline=shade(body, 0.7))
    draw.ellipse(rect(box, 0.72, 0.04, 0.84, 0.12), fill=(90, 90, 95))
    draw.rectangle(rect(box, 0.08, 0.05, 0.4, 0.1), fill=(40, 60, 80))
    draw.ellipse(rect(box, 0.15, 0.26, 0.85, 0.92), fill=(150, 150, 155))
    draw.ellipse(rect(box, 0.22, 0.32, 0.78, 0.86), fill=(40, 50, 60))


def fridge(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    body = rnd.pick(((235, 235, 235), (190, 192, 196), (40, 40, 42), (200, 60, 50), (150, 200, 210)))
    shaded(img, fit(box, [(0, 0), (1, 0), (1, 1), (0, 1)]), body)
    split = rnd.uniform(0.3, 0.4)
    draw.line(fit(box, [(0, split), (1, split)]), fill=shade(body, 0.6), width=2)
    handle = shade(body, 0.6)
    draw.rectangle(rect(box, 0.82, split - 0.2, 0.87, split - 0.05), fill=handle)
    draw.rectangle(rect(box, 0.82, split + 0.05, 0.87, split + 0.35), fill=handle)


def headphones(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    color = rnd.pick(((20, 20, 22), (235, 235, 235), flat_color(rnd)))
    draw.arc(rect(box, 0.1, 0.0, 0.9, 1.1), 180, 360, fill=color, width=max(3, int((box[2] - box[0]) * 0.07)))
    for u in (0.02, 0.74):
        rounded(draw, rect(box, u, 0.45, u + 0.24, 0.95), radius=6, fill=shade(color, 0.85), outline=shade(color, 0.5))


TECH: tuple[Drawer, ...] = (phone, laptop, television, drill, washing_machine, fridge, headphones)


# --- Sensitive proxy: weapon silhouettes ---------------------------------------------------------------
def _metal(rnd: Rand) -> RGB:
    return rnd.pick(((30, 30, 32), (55, 55, 58), (90, 92, 96), (20, 22, 20)))


def knife(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    blade = fit(box, [(0.35, 0.35), (0.85, 0.35), (1.0, 0.5), (0.82, 0.62), (0.35, 0.62)])
    shaded(img, blade, (205, 208, 212))
    draw.line(fit(box, [(0.35, 0.45), (0.9, 0.45)]), fill=(150, 150, 155), width=1)
    draw.rectangle(rect(box, 0.3, 0.25, 0.36, 0.72), fill=(70, 70, 75))
    handle = rnd.pick(((60, 40, 25), (25, 25, 25), (120, 80, 45)))
    rounded(draw, rect(box, 0.0, 0.36, 0.3, 0.62), radius=4, fill=handle)


def pistol(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    metal = _metal(rnd)
    draw.polygon(fit(box, [(0.0, 0.1), (1.0, 0.1), (1.0, 0.38), (0.0, 0.38)]), fill=shade(metal, 1.2))
    draw.polygon(fit(box, [(0.0, 0.38), (0.4, 0.38), (0.32, 1.0), (0.02, 1.0), (0.12, 0.5), (0.0, 0.45)]), fill=metal)
    draw.arc(rect(box, 0.32, 0.25, 0.6, 0.7), 0, 180, fill=metal, width=max(2, int((box[3] - box[1]) * 0.05)))
    draw.line(fit(box, [(0.05, 0.2), (0.95, 0.2)]), fill=shade(metal, 1.6), width=1)


def rifle(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    metal = _metal(rnd)
    stock = rnd.pick((metal, (110, 70, 40), (85, 90, 60)))
    draw.polygon(fit(box, [(0.0, 0.35), (0.28, 0.4), (0.28, 0.6), (0.0, 0.9)]), fill=stock)
    draw.rectangle(rect(box, 0.27, 0.35, 0.7, 0.6), fill=metal)
    draw.rectangle(rect(box, 0.7, 0.43, 1.0, 0.5), fill=shade(metal, 1.2))
    draw.polygon(fit(box, [(0.45, 0.6), (0.52, 0.6), (0.55, 0.95), (0.47, 0.95)]), fill=metal)
    draw.polygon(fit(box, [(0.3, 0.6), (0.36, 0.6), (0.32, 0.85), (0.26, 0.85)]), fill=stock)
    if rnd.chance(0.5):
        rounded(draw, rect(box, 0.35, 0.15, 0.62, 0.3), radius=3, fill=mix(metal, (0, 0, 0), 0.3))


WEAPONS: tuple[tuple[Drawer, float], ...] = ((knife, 3.5), (pistol, 1.4), (rifle, 4.0))  # drawer, width / height
