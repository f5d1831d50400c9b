"""Per-colour paint distributions for vehicle bodies.

Each colour label has a few anchor paints spanning what people call that colour on a car (Grey includes
silver and gunmetal, Brown includes tan, bronze and chocolate, Burgundy is the dark red-purple of wine),
and a sample is an anchor with a small hue/saturation/value jitter that stays inside the label.
"""

from __future__ import annotations

import colorsys

from .common import RGB, Rand, clamp
from .labels import COLORS

_ANCHORS: dict[str, tuple[RGB, ...]] = {
    "Black": ((18, 18, 20), (28, 28, 32), (12, 14, 20), (35, 33, 33), (24, 26, 30)),
    "Blue": ((20, 40, 110), (30, 75, 170), (60, 115, 200), (45, 80, 130), (15, 30, 75), (90, 150, 215)),
    "Brown": ((95, 60, 35), (150, 115, 75), (180, 150, 110), (135, 90, 45), (70, 45, 30), (115, 80, 55)),
    "Burgundy": ((105, 20, 40), (85, 15, 35), (125, 28, 52), (95, 25, 45)),
    "Green": ((30, 95, 50), (20, 65, 35), (100, 160, 60), (40, 110, 85), (55, 105, 45), (25, 130, 60)),
    "Grey": ((95, 98, 102), (130, 132, 135), (170, 173, 178), (70, 74, 80), (150, 150, 148), (185, 188, 192)),
    "Orange": ((230, 105, 20), (240, 140, 40), (205, 85, 25), (250, 120, 0)),
    "Pink": ((240, 150, 185), (225, 100, 155), (250, 190, 205), (235, 120, 170)),
    "Purple": ((90, 40, 135), (120, 60, 165), (70, 30, 100), (150, 115, 190), (105, 35, 120)),
    "Red": ((200, 20, 25), (170, 15, 20), (228, 38, 36), (190, 30, 40), (150, 12, 15)),
    "White": ((242, 242, 240), (235, 236, 238), (248, 246, 240), (228, 230, 232)),
    "Yellow": ((240, 200, 20), (250, 220, 60), (225, 180, 0), (245, 210, 90)),
}

_NEUTRAL = {"Black", "Grey", "White"}


def paint(color: str, rnd: Rand) -> RGB:
    """A body paint that a human would still call ``color``."""
    if color not in _ANCHORS:
        raise ValueError(f"unknown color {color!r}; expected one of {COLORS}")
    r, g, b = rnd.pick(_ANCHORS[color])
    h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
    if color in _NEUTRAL:
        v = v * rnd.uniform(0.92, 1.06) if color != "White" else min(1.0, v * rnd.uniform(0.97, 1.02))
        s = min(s, 0.08) * rnd.uniform(0.5, 1.2)
    else:
        h = (h + rnd.uniform(-0.012, 0.012)) % 1.0
        s = min(1.0, s * rnd.uniform(0.88, 1.08))
        v = min(1.0, v * rnd.uniform(0.9, 1.07))
    rr, gg, bb = colorsys.hsv_to_rgb(h, s, v)
    return clamp(rr * 255), clamp(gg * 255), clamp(bb * 255)


def any_paint(rnd: Rand) -> RGB:
    return paint(rnd.pick(COLORS), rnd)


def flat_color(rnd: Rand, *, light: bool | None = None) -> RGB:
    """A flat graphic colour (for placeholders and products), optionally forced light or dark."""
    h = rnd.uniform(0, 1)
    s = rnd.uniform(0.0, 0.75)
    if light is None:
        v = rnd.uniform(0.2, 0.98)
    else:
        v = rnd.uniform(0.8, 0.98) if light else rnd.uniform(0.15, 0.45)
        s = s * 0.5 if light else s
    rr, gg, bb = colorsys.hsv_to_rgb(h, s, v)
    return clamp(rr * 255), clamp(gg * 255), clamp(bb * 255)
