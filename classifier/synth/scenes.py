"""Dealer photos (cluttered lots and showrooms, camera artefacts) and Stock renders (clean, on white)."""

from __future__ import annotations

from PIL import Image, ImageDraw

from . import placeholders
from .colors import any_paint, paint
from .common import (
    RGB,
    Rand,
    add_noise,
    blur,
    centered_text,
    clip_box,
    jpeg_roundtrip,
    lighting,
    shade,
    soft_shadow,
    vertical_gradient,
    vignette,
)
from .labels import COLORS, IMAGE_TYPES, NOT_SENSITIVE, TOOLS, Box, Sample
from .vehicles import KIND_OF_SHAPE, SHAPE_NAMES, Quad, View, draw_vehicle, main_shape, make_view

_SIGNS = ("AUTO SALES", "MOTORS", "CAR CENTER", "PRE-OWNED", "AUTO MALL", "CARS & TRUCKS", "SALE", "FINANCING")
_WATERMARKS = ("STOCK PHOTO", "Sample image", "(c) AutoImages", "Image for illustration only", "EVOX", "stock")


def _sky(rnd: Rand, size: tuple[int, int]) -> Image.Image:
    kind = rnd.weighted(("clear", "overcast", "dusk"), (0.6, 0.3, 0.1))
    if kind == "clear":
        top: RGB = (rnd.integer(60, 120), rnd.integer(120, 170), rnd.integer(195, 240))
        low: RGB = (rnd.integer(170, 215), rnd.integer(200, 225), rnd.integer(225, 245))
    elif kind == "overcast":
        g = rnd.integer(150, 195)
        top, low = (g, g + 3, g + 8), (g + 12, g + 14, g + 16)
    else:
        top, low = (
            (rnd.integer(70, 110), rnd.integer(80, 120), rnd.integer(140, 180)),
            (235, rnd.integer(150, 190), 120),
        )
    return vertical_gradient(size, [(0.0, top), (1.0, low)])


def _buildings(draw: ImageDraw.ImageDraw, rnd: Rand, w: int, horizon: int, h: int) -> None:
    x = -rnd.integer(0, w // 6)
    while x < w:
        bw = rnd.integer(w // 10, w // 3)
        bh = rnd.integer(h // 20, h // 4)
        if rnd.chance(0.25):
            x += bw // 2
            continue
        wall = rnd.pick(((150, 145, 135), (120, 90, 75), (190, 185, 170), (110, 115, 125), (200, 200, 195)))
        wall = shade(wall, rnd.uniform(0.85, 1.1))
        draw.rectangle((x, horizon - bh, x + bw, horizon), fill=wall)
        if rnd.chance(0.5):
            draw.rectangle((x + bw * 0.05, horizon - bh * 0.7, x + bw * 0.95, horizon), fill=(60, 75, 90))
            for k in range(1, 6):
                xx = x + bw * (0.05 + 0.18 * k)
                draw.line([(xx, horizon - bh * 0.7), (xx, horizon)], fill=(170, 170, 170), width=1)
        if rnd.chance(0.45):
            sign_h = max(6, bh // 5)
            band = rnd.pick(((200, 20, 30), (20, 60, 150), (240, 240, 240), (20, 20, 20), (250, 190, 0)))
            draw.rectangle((x + bw * 0.1, horizon - bh - sign_h, x + bw * 0.9, horizon - bh), fill=band)
            ink = (255, 255, 255) if sum(band) < 450 else (20, 20, 20)
            centered_text(draw, (x + bw / 2, horizon - bh - sign_h / 2), rnd.pick(_SIGNS), int(sign_h * 0.8), ink)
        x += bw


def _trees(draw: ImageDraw.ImageDraw, rnd: Rand, w: int, horizon: int, h: int) -> None:
    for _ in range(rnd.integer(0, 6)):
        cx, r = rnd.uniform(0, w), rnd.uniform(h * 0.03, h * 0.1)
        draw.line([(cx, horizon), (cx, horizon - r)], fill=(70, 50, 35), width=max(2, int(r / 6)))
        green = (rnd.integer(25, 70), rnd.integer(60, 110), rnd.integer(25, 55))
        for _ in range(3):
            ox, oy = rnd.uniform(-r * 0.5, r * 0.5), rnd.uniform(-r * 0.4, r * 0.2)
            draw.ellipse(
                (cx + ox - r * 0.7, horizon - r * 1.6 + oy, cx + ox + r * 0.7, horizon - r * 0.4 + oy), fill=green
            )


def _flags(draw: ImageDraw.ImageDraw, rnd: Rand, w: int, horizon: int, h: int) -> None:
    for _ in range(rnd.integer(0, 3)):
        x = rnd.uniform(0, w)
        top = horizon - rnd.uniform(0.1, 0.3) * h
        draw.line([(x, horizon + h * 0.02), (x, top)], fill=(200, 200, 205), width=max(2, w // 300))
        if rnd.chance(0.5):
            fw = rnd.uniform(0.03, 0.07) * w
            draw.rectangle(
                (x, top, x + fw * 0.5, top + fw * 1.6), fill=rnd.pick(((220, 30, 30), (30, 70, 200), (250, 200, 0)))
            )
    if rnd.chance(0.5):
        y0, y1 = horizon - rnd.uniform(0.08, 0.2) * h, horizon - rnd.uniform(0.08, 0.2) * h
        n = rnd.integer(10, 24)
        colors = [(220, 30, 30), (240, 240, 240), (30, 70, 200), (250, 200, 0)]
        tri = w / n * 0.45
        for i in range(n):
            t = i / (n - 1)
            x = t * w
            y = y0 + (y1 - y0) * t + 4 * t * (1 - t) * h * 0.04
            draw.polygon([(x - tri, y), (x + tri, y), (x, y + tri * 1.8)], fill=colors[i % len(colors)])
        draw.line([(0, y0), (w, y1)], fill=(60, 60, 60), width=1)


def _lot(rnd: Rand, size: tuple[int, int], horizon: int) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size)
    img.paste(_sky(rnd, (w, horizon)), (0, 0))
    g = rnd.integer(70, 150)
    ground = vertical_gradient((w, h - horizon), [(0.0, (g + 25, g + 25, g + 27)), (1.0, (g - 20, g - 20, g - 18))])
    mottling = Image.frombytes(
        "L",
        (max(2, w // 40), max(2, (h - horizon) // 40)),
        rnd.gen.bytes(max(2, w // 40) * max(2, (h - horizon) // 40)),
    )
    mottling = mottling.resize(ground.size, Image.Resampling.BILINEAR).convert("RGB")
    img.paste(Image.blend(ground, mottling, rnd.uniform(0.05, 0.15)), (0, horizon))
    draw = ImageDraw.Draw(img)
    _trees(draw, rnd, w, horizon, h)
    _buildings(draw, rnd, w, horizon, h)
    _flags(draw, rnd, w, horizon, h)
    line = rnd.pick(((235, 235, 230), (230, 200, 60)))
    vx, spacing = rnd.uniform(0.2, 0.8) * w, rnd.uniform(0.3, 0.6) * w
    x = vx - 4 * w + rnd.uniform(0, spacing)
    far = rnd.uniform(0.3, 0.6)
    y_far = h - (h - horizon) * far
    while x < vx + 4 * w:
        draw.line([(x, h), (x + (vx - x) * far, y_far)], fill=line, width=max(1, w // 200))
        x += spacing
    if rnd.chance(0.6):
        draw.line([(0, y_far), (w, y_far)], fill=line, width=max(1, w // 250))
    return img


def _showroom(rnd: Rand, size: tuple[int, int], horizon: int) -> Image.Image:
    w, h = size
    wall = rnd.pick(((190, 185, 175), (170, 172, 178), (200, 195, 185), (120, 125, 135)))
    img = vertical_gradient(
        size,
        [
            (0.0, shade(wall, 0.8)),
            (horizon / h, wall),
            (horizon / h + 0.001, shade(wall, 0.75)),
            (1.0, shade(wall, 0.95)),
        ],
    )
    draw = ImageDraw.Draw(img)
    glass = rnd.pick(((120, 150, 175), (95, 120, 140), (150, 170, 180)))
    x = rnd.uniform(-0.2, 0.2) * w
    pane = rnd.uniform(0.12, 0.25) * w
    while x < w and rnd.chance(0.9):
        draw.rectangle(
            (x, h * 0.12, x + pane * 0.95, horizon), fill=glass, outline=(60, 60, 65), width=max(2, w // 200)
        )
        x += pane
    for _ in range(rnd.integer(2, 6)):
        lx = rnd.uniform(0, w)
        draw.ellipse((lx - w * 0.02, h * 0.02, lx + w * 0.02, h * 0.05), fill=(245, 240, 220))
    tile = shade(wall, 0.6)
    for k in range(1, 8):
        y = horizon + (h - horizon) * (k / 8) ** 1.6
        draw.line([(0, y), (w, y)], fill=tile, width=1)
    return img


def _place(rnd: Rand, size: tuple[int, int], length: float, ground_lo: float, cut: bool) -> tuple[float, float]:
    w, h = size
    slack = 0.25 * length if cut else 0.0
    lo, hi = length / 2 - slack, w - length / 2 + slack
    cx = rnd.uniform(lo, hi) if hi > lo else w / 2
    ground = rnd.uniform(min(ground_lo, h * 0.96), h * 0.97)
    return cx, ground


def _overlap(a: Quad, b: Quad) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / max(1.0, (a[2] - a[0]) * (a[3] - a[1]))


def _area(b: Box) -> int:
    return (b[2] - b[0]) * (b[3] - b[1])


def dealer_image(
    rnd: Rand, size: tuple[int, int], color: str, *, paint_rnd: Rand | None = None, shape: str | None = None
) -> tuple[Image.Image, list[Box], list[str]]:
    """A dealer photo; returns the image, the vehicle boxes (the labelled, biggest, one first) and their kinds.
    `paint_rnd` draws the main vehicle's paint (default: `rnd`), `shape` its shape (default: an ordinary one)."""
    w, h = size
    horizon = int(h * rnd.uniform(0.28, 0.55))
    img = _showroom(rnd, size, horizon) if rnd.chance(0.2) else _lot(rnd, size, horizon)
    length = w * rnd.uniform(0.3, 0.9)
    extras = rnd.integer(1, 2) if rnd.chance(0.3) else 0
    cut = extras == 0 and length > 0.5 * w and rnd.chance(0.2)
    cx, ground = _place(rnd, size, length, max(horizon + 0.2 * h, 0.55 * length + 0.03 * h), cut)
    background: list[tuple[Quad, str]] = []
    for _ in range(rnd.integer(0, 5)):
        bl = w * rnd.uniform(0.08, 0.2)
        view = make_view(
            rnd, center_x=rnd.uniform(0, w), ground=horizon + rnd.uniform(0.03, 0.12) * h, length=bl, three_quarter=0.3
        )
        background.append(_drawn(img, rnd, any_paint(rnd), view, None, detail=False))
    foreground: list[tuple[Quad, str]] = []
    for _ in range(extras):
        el = length * rnd.uniform(0.55, 0.85)
        side = rnd.sign()
        ex = cx + side * rnd.uniform(0.6, 0.95) * (length + el) / 2
        view = make_view(rnd, center_x=ex, ground=ground - rnd.uniform(0.02, 0.08) * h, length=el, three_quarter=0.5)
        soft_shadow(img, _footprint(view), 0.5)
        foreground.append(_drawn(img, rnd, any_paint(rnd), view, None))
    view = make_view(rnd, center_x=cx, ground=ground, length=length, three_quarter=0.55)
    soft_shadow(img, _footprint(view), rnd.uniform(0.4, 0.7))
    main, main_kind = _drawn(img, rnd, paint(color, paint_rnd or rnd), view, shape)
    img = _camera(img, rnd)
    main_box = clip_box(main, size)
    others = [q for q in foreground if _overlap(q[0], main) < 0.6]
    others += [q for q in background if max(_overlap(q[0], f) for f in [main, *(f for f, _ in foreground)]) < 0.5]
    clipped = sorted(
        ((c, kind) for c, kind in ((clip_box(b, size), kind) for b, kind in others) if c is not None),
        key=lambda item: _area(item[0]),
        reverse=True,
    )
    found = [(main_box, main_kind)] if main_box else []
    found += [(c, kind) for c, kind in clipped if main_box is None or _area(c) < _area(main_box)]
    return img, [box for box, _ in found], [kind for _, kind in found]


def _drawn(
    img: Image.Image, rnd: Rand, color: RGB, view: View, shape: str | None, *, detail: bool = True
) -> tuple[Quad, str]:
    """draw_vehicle, with the kind of what it drew. An ordinary shape is drawn from `rnd` exactly as draw_vehicle
    would draw it, so a scene without a named shape keeps its pixels."""
    picked = rnd.pick(SHAPE_NAMES)
    shape = shape or picked
    return draw_vehicle(img, rnd, color, view, shape=shape, detail=detail), KIND_OF_SHAPE[shape]


def _footprint(view: View) -> Quad:
    dx, dy = view.depth
    x0, x1 = view.x0 + min(0.0, dx), view.x0 + view.length + max(0.0, dx)
    return (
        x0 - 0.03 * view.length,
        view.ground + dy - 0.04 * view.length,
        x1 + 0.03 * view.length,
        view.ground + 0.05 * view.length,
    )


def _camera(img: Image.Image, rnd: Rand) -> Image.Image:
    img = lighting(img, rnd, 1.0)
    if rnd.chance(0.2):
        img = blur(img, rnd.uniform(0.5, 1.5) * img.width / 640)
    img = add_noise(img, rnd, rnd.integer(2, 9), color=rnd.chance(0.3))
    if rnd.chance(0.65):
        img = vignette(img, rnd.uniform(0.15, 0.45))
    return jpeg_roundtrip(img, rnd.integer(40, 90))


def stock_image(
    rnd: Rand, size: tuple[int, int], color: str, *, paint_rnd: Rand | None = None, shape: str | None = None
) -> tuple[Image.Image, Box | None, str]:
    """A clean render of one vehicle on white or near-white, with a soft shadow and no camera noise; returns the
    image, the vehicle's box and its kind. `paint_rnd` draws the paint (default: `rnd`), `shape` the shape (default:
    an ordinary one)."""
    w, h = size
    top = rnd.integer(248, 255)
    if rnd.chance(0.4):
        bottom = rnd.integer(228, 246)
        img = vertical_gradient(
            size,
            [(0.0, (top, top, top)), (rnd.uniform(0.4, 0.7), (top, top, top)), (1.0, (bottom, bottom, bottom + 2))],
        )
    else:
        img = Image.new("RGB", size, (top, top, top))
    length = w * rnd.uniform(0.5, 0.9)
    length = min(length, h * 1.5)
    ground = rnd.uniform(max(0.62 * h, 0.55 * length + 0.05 * h), 0.9 * h)
    view = make_view(
        rnd,
        center_x=w / 2 + rnd.uniform(-0.05, 0.05) * w,
        ground=min(ground, 0.95 * h),
        length=length,
        three_quarter=0.7,
    )
    soft_shadow(img, _footprint(view), rnd.uniform(0.25, 0.55), (60, 60, 62))
    box, kind = _drawn(img, rnd, paint(color, paint_rnd or rnd), view, shape)
    if rnd.chance(0.25):
        draw = ImageDraw.Draw(img)
        grey = rnd.integer(190, 225)
        text = rnd.pick(_WATERMARKS)
        if rnd.chance(0.5):
            centered_text(draw, (w / 2, h * rnd.uniform(0.1, 0.3)), text, int(h * 0.08), (grey, grey, grey))
        else:
            centered_text(draw, (w * 0.85, h * 0.94), text, int(h * 0.04), (grey, grey, grey))
    if rnd.chance(0.5):
        img = jpeg_roundtrip(img, rnd.integer(88, 97))
    return img, clip_box(box, size), kind


def vehicle_sample(
    seed: int,
    *,
    image_type: str | None = None,
    color: str | None = None,
    kind: str | None = None,
    size: tuple[int, int] = (640, 480),
    repaintable: bool = False,
) -> Sample:
    """A vehicle image: Dealer photo, Stock render or Placeholder graphic (colour and kind ignored for placeholders).

    `kind` (one of classifier.contract.VEHICLE_KINDS) names the main vehicle's kind; without it the vehicle is an
    ordinary car, van, SUV or pickup, and about one in four (RARE_SHARE) a motorcycle, a bus or RV, or a heavy truck,
    drawn from a stream of its own so that every other seed keeps its pixels.
    `repaintable` draws the main car's paint apart from the scene, so that one seed with a given image_type renders
    the same scene and car in any `color` (the same stock render in every paint, as makers publish them); the
    pictures differ from those of the same seed without it."""
    if image_type is not None and image_type not in IMAGE_TYPES:
        raise ValueError(f"unknown image_type {image_type!r}; expected one of {IMAGE_TYPES}")
    if color is not None and color not in COLORS:
        raise ValueError(f"unknown color {color!r}; expected one of {COLORS}")
    rnd = Rand(seed)
    shape = main_shape(Rand([seed, 0x4B1D]), kind)
    if image_type is None:
        image_type = rnd.weighted(IMAGE_TYPES, (0.4, 0.33, 0.0 if color or kind else 0.27))
    if image_type == "Placeholder":
        return placeholders.placeholder_sample(rnd, size)
    color = color or rnd.pick(COLORS)
    paint_rnd = Rand([seed, 0xC010]) if repaintable else None
    if image_type == "Dealer":
        img, boxes, kinds = dealer_image(rnd, size, color, paint_rnd=paint_rnd, shape=shape)
    else:
        img, box, main_kind = stock_image(rnd, size, color, paint_rnd=paint_rnd, shape=shape)
        boxes, kinds = ([box], [main_kind]) if box else ([], [])
    return Sample(img, image_type, color, TOOLS, NOT_SENSITIVE, boxes[0] if boxes else None, tuple(boxes), tuple(kinds))
