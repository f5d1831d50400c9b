"""Product and scenery images for the shopping-intent head, with the sensitive (weapon) proxy."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from . import devices, goods
from .colors import flat_color
from .common import (
    Rand,
    add_noise,
    font,
    jpeg_roundtrip,
    lighting,
    mix,
    random_rgb,
    shade,
    soft_shadow,
    vertical_gradient,
)
from .goods import Drawer
from .labels import FASHION, HOME, INTENT_LABELS, NO_INTENT, NOT_SENSITIVE, SENSITIVE, TOOLS, Sample
from .vehicles import Quad

SENSITIVE_SHARE = 0.08

_ITEMS: dict[str, tuple[Drawer, ...]] = {FASHION: goods.FASHION, HOME: goods.HOME, TOOLS: devices.TECH}
_ASPECT = {  # width / height
    "tshirt": 1.0, "dress": 0.65, "trousers": 0.55, "shoe": 2.0, "handbag": 1.1, "hat": 1.6, "mannequin": 0.5,
    "sofa": 2.0, "chair": 0.6, "table": 1.5, "lamp": 0.5, "plant": 0.75, "watering_can": 1.3, "bookcase": 0.7,
    "phone": 0.5, "laptop": 1.4, "television": 1.6, "drill": 1.2, "washing_machine": 0.85, "fridge": 0.5,
    "headphones": 1.0,
}  # fmt: skip
_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod",
          "tempor", "incididunt", "ut", "labore", "et", "magna")  # fmt: skip


def _backdrop(rnd: Rand, size: tuple[int, int], kind: str) -> tuple[Image.Image, float]:
    """A background and the y of the floor line items stand on."""
    w, h = size
    if kind == "white":
        g = rnd.integer(242, 255)
        return Image.new("RGB", size, (g, g, g)), h * rnd.uniform(0.8, 0.92)
    if kind == "flatlay":
        base = rnd.pick(
            ((225, 215, 200), (200, 205, 210), (150, 110, 80), (240, 235, 225), flat_color(rnd, light=True))
        )
        img = Image.new("RGB", size, base)
        draw = ImageDraw.Draw(img)
        if rnd.chance(0.5):
            step = rnd.uniform(0.08, 0.2) * h
            for k in range(int(h / step) + 1):
                draw.line([(0, k * step), (w, k * step)], fill=shade(base, 0.9), width=1)
        return img, h * 0.85
    floor_y = h * rnd.uniform(0.55, 0.8)
    if kind == "outdoor":
        img = vertical_gradient(size, [(0.0, (110, 160, 220)), (floor_y / h, (200, 220, 235)),
                                       (floor_y / h + 0.001, (80, 140, 60)), (1.0, (50, 100, 40))])  # fmt: skip
        return img, floor_y + (h - floor_y) * 0.5
    wall = rnd.pick(((230, 225, 215), (200, 210, 215), (180, 170, 160), flat_color(rnd, light=True)))
    floor = rnd.pick(((150, 110, 75), (190, 160, 120), (120, 120, 125), (90, 65, 45)))
    img = vertical_gradient(
        size, [(0.0, shade(wall, 0.85)), (floor_y / h, wall), (floor_y / h + 0.001, floor), (1.0, shade(floor, 0.8))]
    )
    draw = ImageDraw.Draw(img)
    if rnd.chance(0.5):
        wx = rnd.uniform(0, 0.7) * w
        draw.rectangle(
            (wx, h * 0.08, wx + w * 0.25, floor_y * 0.75),
            fill=(190, 215, 235),
            outline=(250, 250, 250),
            width=max(2, w // 120),
        )
    for k in range(1, 6):
        y = floor_y + (h - floor_y) * k / 6
        draw.line([(0, y), (w, y)], fill=shade(floor, 0.85), width=1)
    return img, floor_y + (h - floor_y) * rnd.uniform(0.3, 0.7)


def _place_items(img: Image.Image, rnd: Rand, drawers: list[tuple[Drawer, float]], floor: float, kind: str) -> None:
    w, h = img.size
    draw = ImageDraw.Draw(img)
    slot = w / len(drawers)
    for i, (drawer, aspect) in enumerate(drawers):
        ih = h * rnd.uniform(0.35, 0.75) / (1 if len(drawers) == 1 else 1.3)
        iw = ih * aspect
        if iw > slot * 0.9:
            iw, ih = slot * 0.9, slot * 0.9 / aspect
        cx = slot * (i + 0.5) + rnd.uniform(-0.05, 0.05) * slot
        if kind == "flatlay":
            cy = h / 2 + rnd.uniform(-0.15, 0.15) * h
            box: Quad = (cx - iw / 2, cy - ih / 2, cx + iw / 2, cy + ih / 2)
        else:
            bottom = min(h * 0.98, floor)
            box = (cx - iw / 2, max(2.0, bottom - ih), cx + iw / 2, bottom)
            soft_shadow(img, (box[0] - iw * 0.05, box[3] - ih * 0.06, box[2] + iw * 0.05, box[3] + ih * 0.06), 0.35)
        drawer(img, draw, rnd, box)


def _landscape(rnd: Rand, size: tuple[int, int]) -> Image.Image:
    w, h = size
    horizon = h * rnd.uniform(0.35, 0.65)
    sky_top, sky_low = (rnd.integer(40, 120), rnd.integer(100, 170), rnd.integer(180, 240)), random_rgb(rnd, 180, 250)
    img = vertical_gradient(size, [(0.0, sky_top), (horizon / h, sky_low), (1.0, sky_low)])
    draw = ImageDraw.Draw(img)
    if rnd.chance(0.5):
        r = h * rnd.uniform(0.04, 0.1)
        sx, sy = rnd.uniform(0.1, 0.9) * w, rnd.uniform(0.1, 0.4) * horizon
        draw.ellipse((sx - r, sy - r, sx + r, sy + r), fill=(255, 240, rnd.integer(150, 220)))
    for _ in range(rnd.integer(0, 4)):
        cx, cy, r = rnd.uniform(0, w), rnd.uniform(0.05, 0.5) * horizon, rnd.uniform(0.04, 0.1) * w
        for k in range(3):
            draw.ellipse(
                (cx + (k - 1) * r * 0.8 - r, cy - r * 0.5, cx + (k - 1) * r * 0.8 + r, cy + r * 0.5),
                fill=(245, 245, 248),
            )
    if rnd.chance(0.7):
        base = (rnd.integer(60, 120), rnd.integer(80, 130), rnd.integer(90, 150))
        for layer in range(rnd.integer(1, 3)):
            n = rnd.integer(4, 9)
            xs = np.linspace(-0.1 * w, 1.1 * w, n)
            ridge = [(float(x), horizon - rnd.uniform(0.05, 0.3) * h / (layer + 1)) for x in xs]
            draw.polygon(
                [(-10, horizon + 2), *ridge, (w + 10, horizon + 2)], fill=mix(base, sky_low, 0.5 / (layer + 1))
            )
    ground = rnd.pick(
        (((70, 130, 60), (40, 90, 35)), ((40, 90, 150), (20, 50, 100)), ((220, 200, 150), (190, 170, 120)))
    )
    img.paste(vertical_gradient((w, int(h - horizon) + 1), [(0.0, ground[0]), (1.0, ground[1])]), (0, int(horizon)))
    if ground[0][2] == 150:
        for _ in range(rnd.integer(5, 20)):
            y = rnd.uniform(horizon, h)
            x = rnd.uniform(0, w)
            draw.line([(x, y), (x + rnd.uniform(0.05, 0.2) * w, y)], fill=(200, 220, 240), width=1)
    return img


def _abstract(rnd: Rand, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = vertical_gradient(size, [(0.0, flat_color(rnd)), (1.0, flat_color(rnd))])
    draw = ImageDraw.Draw(img)
    if rnd.chance(0.4):
        step = int(rnd.uniform(0.05, 0.15) * w)
        a, b = flat_color(rnd), flat_color(rnd)
        for ty in range(0, h, step):
            for tx in range(0, w, step):
                if (tx // step + ty // step) % 2 == 0:
                    continue
                if rnd.chance(0.7):
                    draw.rectangle((tx, ty, tx + step, ty + step), fill=a)
                else:
                    draw.ellipse((tx, ty, tx + step, ty + step), fill=b)
        return img
    for _ in range(rnd.integer(6, 30)):
        x, y, s = rnd.uniform(0, w), rnd.uniform(0, h), rnd.uniform(0.03, 0.3) * w
        c = flat_color(rnd)
        kind = rnd.integer(0, 3)
        if kind == 0:
            draw.ellipse((x - s, y - s, x + s, y + s), fill=c)
        elif kind == 1:
            draw.rectangle((x - s, y - s * 0.6, x + s, y + s * 0.6), fill=c)
        elif kind == 2:
            draw.polygon([(x, y - s), (x + s, y + s), (x - s, y + s)], fill=c)
        else:
            draw.line([(x, y), (rnd.uniform(0, w), rnd.uniform(0, h))], fill=c, width=max(1, int(s * 0.1)))
    return img


def _document(rnd: Rand, size: tuple[int, int]) -> Image.Image:
    w, h = size
    desk = rnd.pick(((120, 90, 60), (80, 80, 85), (200, 200, 200)))
    img = Image.new("RGB", size, desk)
    draw = ImageDraw.Draw(img)
    margin = rnd.uniform(0.0, 0.12)
    page = (w * margin, h * margin * 0.5, w * (1 - margin), h * (1 + margin))
    draw.rectangle(page, fill=(rnd.integer(238, 252),) * 3)
    px = max(8, int(h * rnd.uniform(0.025, 0.04)))
    x0, y = page[0] + w * 0.05, page[1] + h * 0.05
    draw.text(
        (x0, y), " ".join(rnd.pick(_WORDS) for _ in range(3)).title(), font=font(int(px * 1.6)), fill=(20, 20, 20)
    )
    y += px * 2.5
    ink = (rnd.integer(20, 70),) * 3
    while y < page[3] - px * 2 and y < h:
        if rnd.chance(0.12):
            y += px
            continue
        line = " ".join(rnd.pick(_WORDS) for _ in range(rnd.integer(6, 14)))
        draw.text((x0, y), line, font=font(px), fill=ink)
        y += px * 1.5
    return img


def _weapon_sample(rnd: Rand, size: tuple[int, int], intent: str) -> Image.Image:
    kind = "white" if intent == TOOLS else rnd.pick(("outdoor", "room", "flatlay"))
    img, _floor = _backdrop(rnd, size, kind)
    drawer, aspect = rnd.pick(devices.WEAPONS)
    w, h = size
    iw = w * rnd.uniform(0.4, 0.85)
    ih = min(iw / aspect, h * 0.7)
    iw = ih * aspect
    cx, cy = w / 2 + rnd.uniform(-0.08, 0.08) * w, h / 2 + rnd.uniform(-0.15, 0.15) * h
    drawer(img, ImageDraw.Draw(img), rnd, (cx - iw / 2, cy - ih / 2, cx + iw / 2, cy + ih / 2))
    return img


def _finish(img: Image.Image, rnd: Rand, photo: bool) -> Image.Image:
    if photo:
        img = lighting(img, rnd, 0.8)
        img = add_noise(img, rnd, rnd.integer(0, 5))
        return jpeg_roundtrip(img, rnd.integer(55, 92))
    return jpeg_roundtrip(img, rnd.integer(80, 95)) if rnd.chance(0.5) else img


def product_sample(seed: int, *, intent: str | None = None, size: tuple[int, int] = (640, 480)) -> Sample:
    """A product or scenery image labelled with shopping intent; ~8% are weapon-like (sensitive proxy)."""
    if intent is not None and intent not in INTENT_LABELS:
        raise ValueError(f"unknown intent {intent!r}; expected one of {INTENT_LABELS}")
    rnd = Rand(seed)
    sensitive = intent in (None, TOOLS, NO_INTENT) and rnd.chance(SENSITIVE_SHARE)
    if intent is None:
        intent = rnd.pick((TOOLS, NO_INTENT)) if sensitive else rnd.pick(INTENT_LABELS)
    if sensitive:
        img = _finish(_weapon_sample(rnd, size, intent), rnd, rnd.chance(0.5))
        return Sample(img, "", "", intent, SENSITIVE, None, ())
    if intent == NO_INTENT:
        scene = rnd.weighted((_landscape, _abstract, _document), (0.5, 0.3, 0.2))
        img = _finish(scene(rnd, size), rnd, rnd.chance(0.5))
        return Sample(img, "", "", intent, NOT_SENSITIVE, None, ())
    kinds = ("white", "room", "outdoor", "flatlay") if intent == FASHION else ("white", "room", "outdoor")
    weights = (0.45, 0.25, 0.1, 0.2) if intent == FASHION else (0.5, 0.35, 0.15)
    kind = rnd.weighted(kinds, weights)
    img, floor = _backdrop(rnd, size, kind)
    count = 1 if rnd.chance(0.75) else rnd.integer(2, 3)
    drawers = [rnd.pick(_ITEMS[intent]) for _ in range(count)]
    _place_items(img, rnd, [(d, _ASPECT[d.__name__]) for d in drawers], floor, kind)
    img = _finish(img, rnd, kind != "white")
    return Sample(img, "", "", intent, NOT_SENSITIVE, None, ())
