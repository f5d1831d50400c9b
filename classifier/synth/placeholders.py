"""Placeholder graphics: "image coming soon" cards, dealer logos, flat car silhouettes, camera icons.

Everything is flat: solid fills, no shading and no camera noise, often with text, which is what tells a
placeholder apart from a Stock render even when both sit on white.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from .colors import flat_color
from .common import RGB, Rand, centered_text, clip_box, fit_text_size, jpeg_roundtrip, mix, rounded, shade, text_size
from .labels import NO_INTENT, NOT_SENSITIVE, Box, Sample
from .vehicles import KIND_OF_SHAPE, SHAPE_NAMES, View, draw_silhouette

_TEXTS = (
    "IMAGE COMING SOON",
    "PHOTO COMING SOON",
    "PHOTOS COMING SOON",
    "Image Coming Soon",
    "PHOTO NOT AVAILABLE",
    "Photo not available",
    "NO IMAGE",
    "NO IMAGE AVAILABLE",
    "IMAGE NOT AVAILABLE",
    "MORE PHOTOS SOON",
    "PICTURES COMING SOON",
    "NO PHOTO",
    "Photos Coming Soon!",
    "CALL FOR PHOTOS",
)
_NAMES = ("MOTORS", "AUTO GROUP", "AUTO SALES", "CARS", "AUTOMOTIVE", "DRIVE", "MOTOR CO.", "AUTOHAUS")
_LETTERS = "ABCDEFGHJKLMNPRSTVW"


def _background(rnd: Rand) -> RGB:
    kind = rnd.weighted(("light", "white", "grey", "dark", "brand"), (0.3, 0.15, 0.2, 0.15, 0.2))
    if kind == "white":
        return 255, 255, 255
    if kind == "light":
        g = rnd.integer(215, 245)
        return g, g, rnd.integer(g - 5, min(255, g + 5))
    if kind == "grey":
        g = rnd.integer(120, 200)
        return g, g, g
    if kind == "dark":
        g = rnd.integer(25, 70)
        return g, g, g + rnd.integer(0, 15)
    return flat_color(rnd)


def _ink(rnd: Rand, bg: RGB) -> RGB:
    light = sum(bg) > 420
    if rnd.chance(0.35):
        return flat_color(rnd, light=not light)
    g = rnd.integer(40, 120) if light else rnd.integer(200, 250)
    return g, g, g


def _stripes(draw: ImageDraw.ImageDraw, rnd: Rand, size: tuple[int, int], bg: RGB) -> None:
    w, h = size
    tone = mix(bg, (255, 255, 255) if sum(bg) < 500 else (0, 0, 0), rnd.uniform(0.05, 0.2))
    step = rnd.uniform(0.04, 0.12) * w
    width = max(2, int(step * rnd.uniform(0.2, 0.5)))
    slope = rnd.pick((-1, 1, 0))
    x: float = -h
    while x < w + h:
        draw.line([(x, 0), (x + slope * h, h)], fill=tone, width=width)
        x += step


def _text_block(draw: ImageDraw.ImageDraw, rnd: Rand, size: tuple[int, int], cy: float, ink: RGB, max_h: float) -> None:
    w, _h = size
    text = rnd.pick(_TEXTS)
    words = text.split()
    lines = [text]
    if len(words) > 1 and rnd.chance(0.45):
        k = len(words) // 2
        lines = [" ".join(words[:k]), " ".join(words[k:])]
    longest = max(lines, key=len)
    px = fit_text_size(draw, longest, w * rnd.uniform(0.55, 0.9), int(max_h / len(lines)))
    line_h = text_size(draw, "Hg", px)[1] * 1.35
    for i, line in enumerate(lines):
        centered_text(draw, (w / 2, cy + (i - (len(lines) - 1) / 2) * line_h), line, px, ink)


def _camera_icon(draw: ImageDraw.ImageDraw, cx: float, cy: float, s: float, ink: RGB, bg: RGB, slash: bool) -> None:
    r = max(2, int(s * 0.12))
    rounded(draw, (cx - s, cy - s * 0.6, cx + s, cy + s * 0.7), radius=r, fill=ink)
    draw.rectangle((cx - s * 0.35, cy - s * 0.85, cx + s * 0.35, cy - s * 0.55), fill=ink)
    draw.ellipse((cx - s * 0.45, cy - s * 0.4, cx + s * 0.45, cy + s * 0.5), fill=bg)
    draw.ellipse((cx - s * 0.3, cy - s * 0.25, cx + s * 0.3, cy + s * 0.35), fill=ink)
    if slash:
        draw.line([(cx - s * 1.2, cy - s), (cx + s * 1.2, cy + s)], fill=bg, width=max(3, int(s * 0.25)))
        draw.line([(cx - s * 1.2, cy - s), (cx + s * 1.2, cy + s)], fill=ink, width=max(2, int(s * 0.1)))


def _logo(draw: ImageDraw.ImageDraw, rnd: Rand, cx: float, cy: float, s: float, ink: RGB, bg: RGB) -> None:
    shape = rnd.pick(("circle", "shield", "ring", "square"))
    if shape == "shield":
        draw.polygon(
            [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s * 0.2), (cx, cy + s * 1.1), (cx - s, cy + s * 0.2)],
            fill=ink,
        )
    elif shape == "square":
        rounded(draw, (cx - s, cy - s, cx + s, cy + s), radius=int(s * 0.25), fill=ink)
    else:
        draw.ellipse((cx - s, cy - s, cx + s, cy + s), fill=ink)
        if shape == "ring":
            draw.ellipse((cx - s * 0.8, cy - s * 0.8, cx + s * 0.8, cy + s * 0.8), fill=bg)
    letter_ink = bg if shape != "ring" else ink
    initials = "".join(rnd.pick(_LETTERS) for _ in range(rnd.integer(1, 3)))
    centered_text(draw, (cx, cy), initials, int(s * (1.0 if len(initials) == 1 else 0.7)), letter_ink)


def placeholder_sample(rnd: Rand, size: tuple[int, int]) -> Sample:
    """A flat placeholder graphic; ``box`` is the car silhouette when one is drawn."""
    w, h = size
    bg = _background(rnd)
    img = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(img)
    if rnd.chance(0.25):
        _stripes(draw, rnd, size, bg)
    ink = _ink(rnd, bg)
    kind = rnd.weighted(("text", "silhouette", "logo", "camera"), (0.25, 0.35, 0.2, 0.2))
    with_text = kind == "text" or rnd.chance(0.65)
    icon_cy = h * (0.42 if with_text else 0.5)
    box: Box | None = None
    vehicle_kind = ""
    if kind == "silhouette":
        length = w * rnd.uniform(0.35, 0.8)
        ground = icon_cy + length * 0.17
        view = View(w / 2 - length / 2, ground, length, rnd.sign(), (0.0, 0.0), 0.0, 0.0, rnd.uniform(0.95, 1.05))
        fill = ink if rnd.chance(0.7) else shade(bg, 0.7 if sum(bg) > 300 else 1.6)
        shape = rnd.pick(SHAPE_NAMES)  # as draw_silhouette would pick it: the same pixels
        box = clip_box(draw_silhouette(draw, rnd, view, fill, bg, shape=shape), size)
        vehicle_kind = KIND_OF_SHAPE[shape]
        text_cy = min(h * 0.88, ground + h * 0.12)
    elif kind == "logo":
        s = min(w, h) * rnd.uniform(0.15, 0.28)
        _logo(draw, rnd, w / 2, icon_cy - s * 0.1, s, ink, bg)
        name = rnd.pick(_LETTERS) + rnd.pick(_LETTERS) + " " + rnd.pick(_NAMES)
        px = fit_text_size(draw, name, w * 0.8, int(h * 0.08))
        centered_text(draw, (w / 2, icon_cy + s * 1.35), name, px, ink)
        text_cy = min(h * 0.9, icon_cy + s * 1.35 + h * 0.12)
    elif kind == "camera":
        s = min(w, h) * rnd.uniform(0.12, 0.22)
        _camera_icon(draw, w / 2, icon_cy - s * 0.2, s, ink, bg, rnd.chance(0.4))
        text_cy = min(h * 0.88, icon_cy + s * 1.3)
    else:
        text_cy = h * rnd.uniform(0.4, 0.6)
    if with_text:
        _text_block(draw, rnd, size, text_cy, ink, h * (0.2 if kind == "text" else 0.1))
    if rnd.chance(0.3):
        draw.rectangle((w * 0.03, h * 0.03, w * 0.97, h * 0.97), outline=ink, width=max(2, w // 150))
    if rnd.chance(0.5):
        img = jpeg_roundtrip(img, rnd.integer(70, 95))
    boxes, kinds = ((box,), (vehicle_kind,)) if box else ((), ())
    return Sample(img, "Placeholder", "", NO_INTENT, NOT_SENSITIVE, box, boxes, kinds)
