"""Photo styles the starter models never saw, for measuring drift and the retraining loop that recovers it.

``drifted_sample`` is a *drifted advertiser*: a dealer who photographs its real cars (label **Dealer**) in a
white photo booth, a cyclorama studio whose seamless wall curves into the floor. The pictures have the
clean, empty look of a Stock render, but they are photos: a turntable disc or a floor edge line under the
car, softbox reflections across the paint and glass, a dealer-branded number plate, a dealer logo in a
corner (sometimes a contact banner), sometimes a light stand or a side wall, a colour cast from the booth
lights, sensor noise and JPEG artefacts.

``_trait_level`` sets, per image, how far the backdrop falls off from white and how strong the camera
traits are: ``CLEAN_SHARE`` (25%) of the shots have a near-white backdrop and a clean camera and mostly
read as Stock to the starter model; the rest read mostly Dealer. On 300 samples the starter model's
image_type accuracy is ~0.75 (``python -m classifier.synth.measure_drift --n 300 --learnability``), and a
new last layer fitted on 200 of these plus 400 ordinary samples gets ~0.96 of held-out ones right.

Every image is labelled Dealer (it is a photo of a real car); ``color`` is the car's true paint (the cast
and the reflections make the colour harder to read, as in real booth photos, but never change the label).
"""

from __future__ import annotations

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from .colors import paint
from .common import (
    Rand,
    add_noise,
    blur,
    centered_text,
    clip_box,
    jpeg_roundtrip,
    lighting,
    rounded,
    shade,
    soft_shadow,
    text_size,
    vertical_gradient,
    vignette,
)
from .labels import COLORS, NOT_SENSITIVE, TOOLS, Box, Sample
from .scenes import _footprint  # the shadow footprint of the dealer and stock scenes
from .vehicles import KIND_OF_SHAPE, SHAPE_NAMES, Quad, View, draw_vehicle, main_shape, make_view

DRIFT_IMAGE_TYPE = "Dealer"
CLEAN_SHARE = 0.25  # share of booth shots that look rendered (well-lit backdrop, clean camera)
EXPOSURE_FALLOFF = 120
REFLECTIONS = (2, 4)  # softbox bands mirrored on each car
REFLECTION_ALPHA = (180, 240)  # grey levels the backdrop loses at trait level 1
_DEALERS = ("PRESTIGE MOTORS", "AUTOHAUS", "CITY CARS", "DRIVE NOW", "PREMIER AUTO", "CAR STUDIO", "EURO SPORT")
# Per-channel gains of the booth lights: tungsten, daylight-cool, fluorescent green, magenta LED, neutral.
_CASTS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.97, 0.92),
    (0.94, 0.98, 1.0),
    (0.96, 1.0, 0.95),
    (1.0, 0.96, 0.99),
    (1.0, 1.0, 1.0),
)


def _trait_level(rnd: Rand) -> float:
    """How much of a real photo shows, 0 (booth shot that looks rendered) .. 1 (obviously a photo)."""
    if rnd.chance(CLEAN_SHARE):
        return rnd.uniform(0.25, 0.4)
    return rnd.uniform(0.6, 1.0)


def _cyclorama(rnd: Rand, size: tuple[int, int], cove: int, level: float) -> Image.Image:
    """A seamless white wall curving into a slightly darker white floor."""
    w, h = size
    # The booth is lit for the car: the further the backdrop falls off, the greyer the "white" reads.
    wall = rnd.integer(240, 252) - int(EXPOSURE_FALLOFF * level * rnd.uniform(0.8, 1.0))
    floor_top = wall - rnd.integer(4, 14)
    floor_bottom = floor_top - rnd.integer(6, 22) - int(20 * level)
    band = rnd.uniform(0.04, 0.1)
    c = cove / h
    stops = [
        (0.0, (wall - rnd.integer(0, 10),) * 3),
        (max(0.01, c - band), (wall,) * 3),
        (c, (floor_top + 2,) * 3),
        (min(0.999, c + band), (floor_top,) * 3),
        (1.0, (floor_bottom,) * 3),
    ]
    return vertical_gradient((w, h), stops)


def _booth_edges(img: Image.Image, rnd: Rand, cove: int, level: float) -> None:
    """The ends of the booth: darker side walls, a light stand with a softbox."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    if rnd.chance(0.5 * level + 0.1):
        side = rnd.sign()
        edge = rnd.uniform(0.02, 0.1) * w
        grey = rnd.integer(150, 205)
        x0, x1 = (0.0, edge) if side < 0 else (w - edge, float(w))
        draw.rectangle((x0, 0, x1, h), fill=(grey, grey, grey + 3))
    if rnd.chance(0.45 * level):
        x = rnd.uniform(0.02, 0.12) * w
        x = x if rnd.chance(0.5) else w - x
        top = rnd.uniform(0.05, 0.25) * h
        foot = cove + rnd.uniform(0.05, 0.2) * h
        pole = max(2, w // 220)
        draw.line([(x, top), (x, foot)], fill=(35, 35, 38), width=pole)
        for k in (-1, 1):
            draw.line([(x, foot - 0.04 * h), (x + k * 0.04 * w, foot)], fill=(35, 35, 38), width=pole)
        bw, bh = 0.08 * w, 0.12 * h
        draw.rectangle((x - bw / 2, top - bh, x + bw / 2, top), fill=(248, 248, 246), outline=(40, 40, 42), width=pole)


def _floor_marks(img: Image.Image, rnd: Rand, view: View, level: float) -> None:
    """A turntable disc under the car, or the line where the booth floor meets the workshop floor."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    cx = view.x0 + view.length / 2 + view.depth[0] / 2
    ground = view.ground + view.depth[1] / 2
    kind = rnd.weighted(("turntable", "edge", "both"), (0.5, 0.15, 0.35))
    if kind in ("turntable", "both"):
        rx = view.length * rnd.uniform(0.6, 0.75)
        ry = rx * rnd.uniform(0.12, 0.22)
        disc = rnd.integer(200, 232)
        draw.ellipse(
            (cx - rx, ground - ry, cx + rx, ground + ry),
            fill=(disc, disc, disc + 2),
            outline=(disc - 60, disc - 60, disc - 58),
            width=max(1, int(w / 320 * (1 + level))),
        )
    if kind in ("edge", "both"):
        y = ground + rnd.uniform(0.06, 0.16) * h
        if y < h - 2:
            concrete = rnd.integer(105, 170)
            tone = (concrete, concrete - rnd.integer(0, 8), concrete - rnd.integer(0, 15))
            draw.rectangle((0, y, w, h), fill=tone)
            draw.line([(0, y), (w, y)], fill=shade(tone, 0.5), width=max(1, w // 320))


def _softbox_reflections(img: Image.Image, before: Image.Image, rnd: Rand, box: Quad) -> None:
    """The booth's softboxes mirrored in the paint and glass: long bright bands across the car only."""
    x0, y0, x1, y1 = (int(v) for v in box)
    w, h = img.size
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return
    region = (x0, y0, x1, y1)
    car = ImageChops.difference(img.crop(region), before.crop(region)).convert("L").point(lambda v: 255 if v > 6 else 0)
    bands = Image.new("L", car.size, 0)
    draw = ImageDraw.Draw(bands)
    bw, bh = car.size
    for _ in range(rnd.integer(REFLECTIONS[0], REFLECTIONS[1])):
        yc = rnd.uniform(0.15, 0.75) * bh
        thick = rnd.uniform(0.04, 0.1) * bh
        slope = rnd.uniform(-0.12, 0.12) * bh
        xa, xb = rnd.uniform(-0.1, 0.3) * bw, rnd.uniform(0.7, 1.1) * bw
        alpha = rnd.integer(REFLECTION_ALPHA[0], REFLECTION_ALPHA[1])
        draw.polygon(
            [(xa, yc - thick / 2), (xb, yc - thick / 2 + slope), (xb, yc + thick / 2 + slope), (xa, yc + thick / 2)],
            fill=alpha,
        )
    bands = bands.filter(ImageFilter.GaussianBlur(max(1.0, bh * 0.015)))
    mask = ImageChops.multiply(bands, car)
    img.paste((252, 252, 250), region, mask)


def _plate_banner(img: Image.Image, rnd: Rand, view: View, dealer: str) -> None:
    """A dealer-branded plate on the visible end of the car (on the bumper end in side views)."""
    dx, dy = view.depth
    front_visible = view.persp > 0
    u = 1.0 if front_visible else 0.0
    base = view.p(u, 0.09)
    if abs(dx) >= 0.05 * view.length:
        cx, cy = base[0] + dx / 2, base[1] + dy / 2
        pw = max(16.0, abs(dx) * rnd.uniform(0.55, 0.75))
    else:
        pw = max(16.0, view.length * rnd.uniform(0.1, 0.14))
        inward = -1 if (base[0] > view.x0 + view.length / 2) else 1
        cx, cy = base[0] + inward * pw * 0.55, base[1]
    ph = pw * rnd.uniform(0.25, 0.32)
    draw = ImageDraw.Draw(img)
    fill = rnd.pick(((250, 250, 250), (250, 205, 0), (20, 40, 120), (200, 20, 30)))
    ink = (20, 20, 20) if sum(fill) > 400 else (250, 250, 250)
    draw.rectangle((cx - pw / 2, cy - ph / 2, cx + pw / 2, cy + ph / 2), fill=fill, outline=(30, 30, 30))
    centered_text(draw, (cx, cy), dealer, max(8, int(ph * 0.6)), ink)


def _logo(img: Image.Image, rnd: Rand, dealer: str, level: float) -> None:
    """A dealer logo in a corner and, sometimes, a contact banner along the bottom."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    size = max(8, int(h * rnd.uniform(0.035, 0.06)))
    tw, th = text_size(draw, dealer, size)
    pad = size * 0.5
    corner = rnd.pick(("tl", "tr", "bl", "br"))
    x0 = pad if corner[1] == "l" else w - tw - 3 * pad
    y0 = pad if corner[0] == "t" else h - th - 3 * pad
    brand = rnd.pick(((200, 20, 30), (15, 50, 130), (20, 20, 20), (0, 110, 70)))
    rounded(draw, (x0, y0, x0 + tw + 2 * pad, y0 + th + 2 * pad), size * 0.4, fill=brand)
    centered_text(draw, (x0 + tw / 2 + pad, y0 + th / 2 + pad), dealer, size, (255, 255, 255))
    if rnd.chance(0.4 * level):
        bh = h * rnd.uniform(0.06, 0.09)
        draw.rectangle((0, h - bh, w, h), fill=brand)
        phone = f"CALL {rnd.integer(200, 999)}-{rnd.integer(1000, 9999)}  |  {dealer}"
        centered_text(draw, (w / 2, h - bh / 2), phone, int(bh * 0.5), (255, 255, 255))


def _booth_camera(img: Image.Image, rnd: Rand, cast: tuple[float, float, float], level: float) -> Image.Image:
    k = 0.35 + 0.65 * level
    gains = [1.0 + (g - 1.0) * k for g in cast]
    bands = [band.point(lambda v, g=g: min(255, int(v * g))) for band, g in zip(img.split(), gains, strict=True)]
    img = Image.merge("RGB", bands)
    img = lighting(img, rnd, 0.3 + 0.7 * level)
    if rnd.chance(0.25 * level):
        img = blur(img, rnd.uniform(0.4, 1.2) * img.width / 640)
    img = add_noise(img, rnd, round(1 + 8 * level * rnd.uniform(0.6, 1.0)), color=rnd.chance(0.3))
    if rnd.chance(0.6 * level):
        img = vignette(img, rnd.uniform(0.1, 0.35) * level)
    return jpeg_roundtrip(img, rnd.integer(int(90 - 45 * level), int(95 - 35 * level)))


def studio_image(
    rnd: Rand, size: tuple[int, int], color: str, *, shape: str | None = None
) -> tuple[Image.Image, Box | None, str]:
    """A real vehicle photographed in a white booth (`shape`: default an ordinary one); returns the image, the
    vehicle's box and its kind."""
    w, h = size
    level = _trait_level(rnd)
    cove = int(h * rnd.uniform(0.35, 0.55))
    img = _cyclorama(rnd, size, cove, level)
    _booth_edges(img, rnd, cove, level)
    length = min(w * rnd.uniform(0.5, 0.85), h * 1.5)
    ground = rnd.uniform(max(cove + 0.15 * h, 0.55 * length + 0.05 * h), 0.9 * h)
    view = make_view(
        rnd,
        center_x=w / 2 + rnd.uniform(-0.08, 0.08) * w,
        ground=min(ground, 0.93 * h),
        length=length,
        three_quarter=0.8,
    )
    _floor_marks(img, rnd, view, level)
    soft_shadow(img, _footprint(view), rnd.uniform(0.35, 0.7), (50, 50, 52))
    before = img.copy()
    vehicle_paint = paint(color, rnd)
    picked = rnd.pick(SHAPE_NAMES)  # drawn as draw_vehicle would, so that an ordinary shape keeps its pixels
    shape = shape or picked
    box = draw_vehicle(img, rnd, vehicle_paint, view, shape=shape)
    _softbox_reflections(img, before, rnd, box)
    dealer = rnd.pick(_DEALERS)
    _plate_banner(img, rnd, view, dealer)
    if rnd.chance(0.85):
        _logo(img, rnd, dealer, level)
    cast = rnd.pick(_CASTS)
    img = _booth_camera(img, rnd, cast, level)
    return img, clip_box(box, size), KIND_OF_SHAPE[shape]


def drifted_sample(seed: int, *, size: tuple[int, int] = (640, 480), kind: str | None = None) -> Sample:
    """A photo of the drifted advertiser (white photo booth, real vehicle): image_type Dealer, the vehicle's colour.
    `kind` as for scenes.vehicle_sample: by default an ordinary vehicle, now and then a rarer kind."""
    rnd = Rand([seed, 0xD21F7])
    color = rnd.pick(COLORS)
    img, box, vehicle_kind = studio_image(rnd, size, color, shape=main_shape(Rand([seed, 0xD21F7, 0x4B1D]), kind))
    return Sample(
        img, DRIFT_IMAGE_TYPE, color, TOOLS, NOT_SENSITIVE, box, (box,) if box else (), (vehicle_kind,) if box else ()
    )
