"""Shop items drawn from flat polygons: fashion, home and garden, tools and electronics.

Every drawer takes the item's bounding box in pixels and draws into it; shapes are given in the unit
square and mapped into the box, so sizes and aspect ratios vary freely.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .colors import flat_color
from .common import RGB, Point, Rand, mix, paste_gradient, polygon_bounds, rounded, shade
from .vehicles import Quad

Drawer = Callable[[Image.Image, ImageDraw.ImageDraw, Rand, Quad], None]


def fit(box: Quad, pts: Sequence[Point]) -> list[Point]:
    x0, y0, x1, y1 = box
    return [(x0 + u * (x1 - x0), y0 + v * (y1 - y0)) for u, v in pts]


def rect(box: Quad, u0: float, v0: float, u1: float, v1: float) -> Quad:
    x0, y0, x1, y1 = box
    return x0 + u0 * (x1 - x0), y0 + v0 * (y1 - y0), x0 + u1 * (x1 - x0), y0 + v1 * (y1 - y0)


def shaded(img: Image.Image, poly: list[Point], color: RGB) -> None:
    paste_gradient(img, poly, [(0.0, mix(color, (255, 255, 255), 0.18)), (1.0, shade(color, 0.72))])


def fabric(img: Image.Image, rnd: Rand, poly: list[Point], color: RGB) -> None:
    """Plain, striped or dotted cloth clipped to ``poly``."""
    if rnd.chance(0.6):
        shaded(img, poly, color)
        return
    x0, y0, x1, y1 = polygon_bounds(poly)
    w, h = max(2, x1 - x0 + 1), max(2, y1 - y0 + 1)
    tile = Image.new("RGB", (w, h), color)
    td = ImageDraw.Draw(tile)
    other = flat_color(rnd)
    step = max(4, int(min(w, h) * rnd.uniform(0.06, 0.15)))
    if rnd.chance(0.5):
        for y in range(0, h, step):
            td.rectangle((0, y, w, y + step // 2), fill=other)
    else:
        r = max(1, step // 4)
        for y in range(0, h, step):
            for x in range((y // step % 2) * step // 2, w, step):
                td.ellipse((x - r, y - r, x + r, y + r), fill=other)
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in poly], fill=255)
    img.paste(tile, (x0, y0), mask)


def _outline(draw: ImageDraw.ImageDraw, poly: list[Point], color: RGB) -> None:
    draw.line([*poly, poly[0]], fill=shade(color, 0.6), width=1)


# --- Fashion & Style -----------------------------------------------------------------------------------
_TSHIRT = ((0.36, 0.04), (0.43, 0.1), (0.57, 0.1), (0.64, 0.04), (0.92, 0.16), (1.0, 0.4), (0.82, 0.46), (0.78, 0.38),
           (0.78, 0.98), (0.22, 0.98), (0.22, 0.38), (0.18, 0.46), (0.0, 0.4), (0.08, 0.16))  # fmt: skip


def tshirt(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    color = flat_color(rnd)
    pts = fit(box, _TSHIRT)
    fabric(img, rnd, pts, color)
    _outline(draw, pts, color)
    draw.chord(rect(box, 0.4, -0.02, 0.6, 0.16), 0, 180, fill=shade(color, 0.7))
    if rnd.chance(0.4):
        draw.ellipse(rect(box, 0.38, 0.3, 0.62, 0.52), fill=flat_color(rnd))


def dress(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    color = flat_color(rnd)
    pts = fit(box, [(0.38, 0.02), (0.44, 0.02), (0.47, 0.14), (0.53, 0.14), (0.56, 0.02), (0.62, 0.02), (0.66, 0.3),
                    (0.59, 0.42), (0.92, 0.98), (0.08, 0.98), (0.41, 0.42), (0.34, 0.3)])  # fmt: skip
    fabric(img, rnd, pts, color)
    _outline(draw, pts, color)
    draw.line(
        fit(box, [(0.41, 0.42), (0.59, 0.42)]), fill=shade(color, 0.6), width=max(2, int((box[3] - box[1]) * 0.02))
    )


def trousers(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    color = rnd.pick(((40, 60, 110), (60, 80, 130), (30, 30, 35), (150, 130, 100), flat_color(rnd)))
    pts = fit(box, [(0.2, 0.0), (0.8, 0.0), (0.92, 1.0), (0.58, 1.0), (0.5, 0.3), (0.42, 1.0), (0.08, 1.0)])
    shaded(img, pts, color)
    _outline(draw, pts, color)
    draw.rectangle(rect(box, 0.2, 0.0, 0.8, 0.06), fill=shade(color, 0.8))


def shoe(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    color = flat_color(rnd)
    pts = fit(
        box,
        [(0.04, 0.62), (0.08, 0.25), (0.3, 0.2), (0.42, 0.35), (0.7, 0.45), (0.93, 0.55), (0.98, 0.75), (0.04, 0.75)],
    )
    shaded(img, pts, color)
    _outline(draw, pts, color)
    sole = rnd.pick(((245, 245, 240), (30, 30, 30), (200, 160, 110)))
    rounded(draw, rect(box, 0.02, 0.73, 0.99, 0.88), radius=max(1, int((box[3] - box[1]) * 0.05)), fill=sole)
    for k in range(4):
        u = 0.36 + k * 0.07
        draw.line(fit(box, [(u, 0.3 + k * 0.04), (u + 0.06, 0.36 + k * 0.04)]), fill=shade(color, 0.5), width=2)


def handbag(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    color = rnd.pick(((120, 70, 40), (30, 30, 30), (180, 40, 50), (200, 170, 130), flat_color(rnd)))
    w = max(2, int((box[2] - box[0]) * 0.05))
    draw.arc(rect(box, 0.25, 0.0, 0.75, 0.7), 180, 360, fill=shade(color, 0.7), width=w)
    pts = fit(box, [(0.12, 0.35), (0.88, 0.35), (1.0, 0.98), (0.0, 0.98)])
    shaded(img, pts, color)
    _outline(draw, pts, color)
    draw.polygon(fit(box, [(0.12, 0.35), (0.88, 0.35), (0.8, 0.6), (0.2, 0.6)]), fill=shade(color, 0.85))
    draw.rectangle(rect(box, 0.46, 0.56, 0.54, 0.64), fill=(212, 175, 55))


def hat(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    color = flat_color(rnd)
    draw.ellipse(rect(box, 0.0, 0.55, 1.0, 0.95), fill=shade(color, 0.85))
    crown = fit(box, [(0.25, 0.75), (0.28, 0.2), (0.4, 0.1), (0.6, 0.1), (0.72, 0.2), (0.75, 0.75)])
    shaded(img, crown, color)
    draw.rectangle(rect(box, 0.26, 0.58, 0.74, 0.68), fill=flat_color(rnd))


def mannequin(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    skin = rnd.pick(((235, 230, 225), (40, 40, 42), (210, 190, 160)))
    draw.line(fit(box, [(0.5, 0.9), (0.5, 1.0)]), fill=(90, 90, 90), width=max(2, int((box[2] - box[0]) * 0.03)))
    draw.ellipse(rect(box, 0.38, 0.0, 0.62, 0.18), fill=skin)
    draw.rectangle(rect(box, 0.46, 0.16, 0.54, 0.24), fill=skin)
    garment = tshirt if rnd.chance(0.5) else dress
    garment(img, draw, rnd, rect(box, 0.05, 0.2, 0.95, 0.92))


FASHION: tuple[Drawer, ...] = (tshirt, dress, trousers, shoe, handbag, hat, mannequin)


# --- Home & Garden -------------------------------------------------------------------------------------
def _wood(rnd: Rand) -> RGB:
    return rnd.pick(((140, 95, 55), (95, 60, 35), (190, 150, 100), (60, 40, 30), (220, 200, 170)))


def sofa(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    color = flat_color(rnd)
    legs = _wood(rnd)
    for u in (0.06, 0.9):
        draw.rectangle(rect(box, u, 0.85, u + 0.04, 1.0), fill=legs)
    shaded(img, fit(box, [(0.05, 0.1), (0.95, 0.1), (0.95, 0.6), (0.05, 0.6)]), color)
    shaded(img, fit(box, [(0.05, 0.55), (0.95, 0.55), (0.95, 0.87), (0.05, 0.87)]), shade(color, 0.9))
    for u in (0.0, 0.88):
        rounded(
            draw,
            rect(box, u, 0.35, u + 0.12, 0.88),
            radius=max(1, int((box[2] - box[0]) * 0.03)),
            fill=shade(color, 0.8),
        )
    n = rnd.integer(2, 3)
    for k in range(n):
        u0 = 0.12 + k * 0.76 / n
        rounded(
            draw, rect(box, u0 + 0.01, 0.2, u0 + 0.76 / n - 0.01, 0.56), radius=4, outline=shade(color, 0.7), width=2
        )


def chair(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    color = _wood(rnd)
    seat = flat_color(rnd) if rnd.chance(0.5) else color
    w = max(2, int((box[2] - box[0]) * 0.06))
    draw.line(fit(box, [(0.2, 0.0), (0.25, 0.55)]), fill=color, width=w)
    draw.line(fit(box, [(0.25, 0.55), (0.25, 1.0)]), fill=color, width=w)
    draw.line(fit(box, [(0.8, 0.55), (0.8, 1.0)]), fill=color, width=w)
    shaded(img, fit(box, [(0.18, 0.05), (0.3, 0.05), (0.32, 0.4), (0.2, 0.4)]), seat)
    shaded(img, fit(box, [(0.15, 0.5), (0.9, 0.5), (0.88, 0.6), (0.15, 0.6)]), seat)


def table(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    color = _wood(rnd)
    w = max(2, int((box[2] - box[0]) * 0.04))
    for u in (0.08, 0.9):
        draw.line(fit(box, [(u, 0.25), (u, 1.0)]), fill=shade(color, 0.8), width=w)
    shaded(img, fit(box, [(0.0, 0.18), (1.0, 0.18), (1.0, 0.3), (0.0, 0.3)]), color)
    if rnd.chance(0.5):
        draw.ellipse(rect(box, 0.4, 0.0, 0.52, 0.18), fill=flat_color(rnd))


def lamp(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    shade_c = flat_color(rnd, light=True)
    metal = rnd.pick(((60, 60, 60), (200, 170, 90), (180, 180, 185)))
    draw.ellipse(rect(box, 0.3, 0.92, 0.7, 1.0), fill=metal)
    draw.line(fit(box, [(0.5, 0.35), (0.5, 0.96)]), fill=metal, width=max(2, int((box[2] - box[0]) * 0.04)))
    shaded(img, fit(box, [(0.3, 0.0), (0.7, 0.0), (0.88, 0.38), (0.12, 0.38)]), shade_c)


def plant(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    pot = rnd.pick(((190, 100, 60), (240, 240, 235), (60, 60, 65), (120, 140, 160)))
    green = (rnd.integer(30, 80), rnd.integer(100, 160), rnd.integer(30, 70))
    cx, base = (box[0] + box[2]) / 2, box[1] + (box[3] - box[1]) * 0.6
    size = (box[3] - box[1]) * 0.55
    for _ in range(rnd.integer(6, 14)):
        a = rnd.uniform(-2.6, -0.5)
        tip = (cx + np.cos(a) * size, base + np.sin(a) * size)
        mid = (cx + np.cos(a) * size * 0.5, base + np.sin(a) * size * 0.5)
        n = (-np.sin(a) * size * 0.12, np.cos(a) * size * 0.12)
        leaf = [(cx, base), (mid[0] + n[0], mid[1] + n[1]), tip, (mid[0] - n[0], mid[1] - n[1])]
        draw.polygon(leaf, fill=shade(green, rnd.uniform(0.7, 1.2)), outline=shade(green, 0.6))
    shaded(img, fit(box, [(0.25, 0.58), (0.75, 0.58), (0.68, 1.0), (0.32, 1.0)]), pot)


def watering_can(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    color = rnd.pick(((40, 140, 70), (200, 60, 40), (90, 110, 130), (230, 180, 40)))
    w = max(2, int((box[2] - box[0]) * 0.05))
    draw.line(fit(box, [(0.65, 0.65), (0.98, 0.2)]), fill=shade(color, 0.85), width=w)
    draw.ellipse(rect(box, 0.92, 0.12, 1.0, 0.26), fill=shade(color, 0.7))
    draw.arc(rect(box, 0.1, 0.05, 0.6, 0.6), 180, 360, fill=shade(color, 0.8), width=w)
    shaded(img, fit(box, [(0.1, 0.3), (0.65, 0.3), (0.68, 1.0), (0.07, 1.0)]), color)


def bookcase(img: Image.Image, draw: ImageDraw.ImageDraw, rnd: Rand, box: Quad) -> None:
    wood = _wood(rnd)
    draw.rectangle(box, fill=wood)
    shelves = rnd.integer(3, 5)
    for s in range(shelves):
        v0, v1 = 0.04 + s * 0.92 / shelves, 0.04 + (s + 1) * 0.92 / shelves - 0.03
        draw.rectangle(rect(box, 0.05, v0, 0.95, v1), fill=shade(wood, 0.55))
        u = 0.07
        while u < 0.85:
            bw = rnd.uniform(0.03, 0.07)
            draw.rectangle(rect(box, u, v0 + rnd.uniform(0.0, 0.06), u + bw, v1), fill=flat_color(rnd))
            u += bw + 0.005


HOME: tuple[Drawer, ...] = (sofa, chair, table, lamp, plant, watering_can, bookcase)
