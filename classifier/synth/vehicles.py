"""Vehicle bodies drawn as extruded side profiles.

A body is a side outline in car units (``u`` along the length, 0 = rear, 1 = front; ``v`` up, in car
lengths). A :class:`View` projects it to pixels with a mirror, a height perspective and a depth offset:
the outline's edges that face the camera are extruded along the depth offset, which shows the roof,
bonnet and front (or rear) face of 3/4 views with plain polygons, so a car costs a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from .common import RGB, Point, Rand, mix, paste_gradient, polygon_bounds, shade

Quad = tuple[float, float, float, float]


@dataclass(frozen=True)
class BodyShape:
    upper: tuple[Point, ...]  # rear bottom, over the roof, to the front bottom
    bottom: tuple[Point, ...]  # closes the outline from front to rear
    glass: tuple[tuple[Point, ...], ...]  # side windows
    glass_edges: tuple[int, ...]  # indices i of upper[i] -> upper[i + 1] segments that are windscreens
    pillars: tuple[float, ...]
    wheels: tuple[float, float]
    wheel_r: float
    belt: float
    head: Quad  # u0, v0, u1, v1 of the side headlight
    tail: Quad


SHAPES: dict[str, BodyShape] = {
    "sedan": BodyShape(
        upper=((0, 0.07), (0, 0.17), (0.025, 0.205), (0.22, 0.21), (0.35, 0.295), (0.56, 0.3), (0.7, 0.215),
               (0.965, 0.19), (1, 0.15), (1, 0.07)),
        bottom=((0.975, 0.04), (0.025, 0.04)),
        glass=(((0.245, 0.215), (0.355, 0.285), (0.55, 0.288), (0.675, 0.218)),),
        glass_edges=(3, 5), pillars=(0.46,), wheels=(0.18, 0.8), wheel_r=0.068, belt=0.21,
        head=(0.945, 0.155, 1.0, 0.18), tail=(0.0, 0.165, 0.025, 0.195),
    ),
    "suv": BodyShape(
        upper=((0, 0.08), (0, 0.23), (0.03, 0.355), (0.06, 0.37), (0.62, 0.365), (0.75, 0.245), (0.97, 0.22),
               (1, 0.17), (1, 0.08)),
        bottom=((0.975, 0.05), (0.025, 0.05)),
        glass=(((0.045, 0.25), (0.07, 0.35), (0.61, 0.348), (0.715, 0.25)),),
        glass_edges=(2, 4), pillars=(0.27, 0.5), wheels=(0.17, 0.81), wheel_r=0.078, belt=0.24,
        head=(0.945, 0.18, 1.0, 0.21), tail=(0.0, 0.19, 0.02, 0.24),
    ),
    "pickup": BodyShape(
        upper=((0, 0.08), (0, 0.22), (0.43, 0.22), (0.445, 0.33), (0.47, 0.34), (0.64, 0.335), (0.74, 0.235),
               (0.97, 0.215), (1, 0.17), (1, 0.08)),
        bottom=((0.975, 0.05), (0.025, 0.05)),
        glass=(((0.46, 0.235), (0.475, 0.32), (0.63, 0.318), (0.715, 0.238)),),
        glass_edges=(5,), pillars=(0.56,), wheels=(0.16, 0.8), wheel_r=0.08, belt=0.225,
        head=(0.945, 0.175, 1.0, 0.205), tail=(0.0, 0.16, 0.015, 0.21),
    ),
    "hatchback": BodyShape(
        upper=((0, 0.08), (0, 0.2), (0.02, 0.24), (0.09, 0.335), (0.14, 0.355), (0.52, 0.35), (0.68, 0.23),
               (0.96, 0.2), (1, 0.16), (1, 0.08)),
        bottom=((0.975, 0.05), (0.025, 0.05)),
        glass=(((0.11, 0.245), (0.15, 0.335), (0.51, 0.335), (0.645, 0.235)),),
        glass_edges=(2, 5), pillars=(0.36,), wheels=(0.17, 0.82), wheel_r=0.075, belt=0.235,
        head=(0.945, 0.16, 1.0, 0.19), tail=(0.0, 0.18, 0.02, 0.23),
    ),
    "van": BodyShape(
        upper=((0, 0.07), (0, 0.38), (0.015, 0.41), (0.8, 0.41), (0.9, 0.27), (0.975, 0.24), (1, 0.19), (1, 0.07)),
        bottom=((0.975, 0.045), (0.025, 0.045)),
        glass=(((0.64, 0.275), (0.645, 0.39), (0.79, 0.39), (0.875, 0.275)),
               ((0.05, 0.28), (0.05, 0.385), (0.6, 0.385), (0.6, 0.28))),
        glass_edges=(3,), pillars=(0.33,), wheels=(0.16, 0.83), wheel_r=0.07, belt=0.27,
        head=(0.945, 0.2, 1.0, 0.23), tail=(0.0, 0.22, 0.015, 0.3),
    ),
    "coupe": BodyShape(
        upper=((0, 0.07), (0, 0.16), (0.03, 0.19), (0.16, 0.195), (0.37, 0.275), (0.52, 0.28), (0.66, 0.2),
               (0.965, 0.175), (1, 0.14), (1, 0.07)),
        bottom=((0.975, 0.035), (0.025, 0.035)),
        glass=(((0.22, 0.2), (0.375, 0.265), (0.51, 0.268), (0.635, 0.203)),),
        glass_edges=(3, 5), pillars=(), wheels=(0.19, 0.8), wheel_r=0.07, belt=0.195,
        head=(0.945, 0.145, 1.0, 0.168), tail=(0.0, 0.15, 0.025, 0.175),
    ),
    "wagon": BodyShape(
        upper=((0, 0.07), (0, 0.19), (0.02, 0.29), (0.06, 0.31), (0.58, 0.305), (0.71, 0.215), (0.965, 0.19),
               (1, 0.15), (1, 0.07)),
        bottom=((0.975, 0.04), (0.025, 0.04)),
        glass=(((0.05, 0.215), (0.07, 0.295), (0.57, 0.293), (0.685, 0.218)),),
        glass_edges=(2, 4), pillars=(0.26, 0.45), wheels=(0.18, 0.8), wheel_r=0.068, belt=0.21,
        head=(0.945, 0.155, 1.0, 0.18), tail=(0.0, 0.17, 0.02, 0.2),
    ),
}  # fmt: skip
# The shapes an ordinary listing's car is drawn from (and background cars, and placeholder silhouettes). The kinds
# added later (VEHICLE_SHAPES) are drawn only when a sample asks for them, so that every seed that does not keeps the
# pixels it always had.
SHAPE_NAMES = tuple(SHAPES)

SHAPES.update({
    "bus": BodyShape(
        upper=((0, 0.06), (0, 0.3), (0.01, 0.32), (0.985, 0.32), (1, 0.29), (1, 0.17), (1, 0.06)),
        bottom=((0.975, 0.04), (0.025, 0.04)),
        glass=(((0.04, 0.18), (0.04, 0.28), (0.84, 0.28), (0.84, 0.18)), ((0.87, 0.07), (0.87, 0.28), (0.95, 0.28),
               (0.95, 0.07))),
        glass_edges=(4,), pillars=(0.17, 0.3, 0.43, 0.57, 0.7), wheels=(0.24, 0.86), wheel_r=0.042, belt=0.17,
        head=(0.985, 0.09, 1.0, 0.12), tail=(0.0, 0.09, 0.01, 0.14),
    ),
    "rv": BodyShape(
        upper=((0, 0.06), (0, 0.36), (0.02, 0.38), (0.82, 0.38), (0.84, 0.3), (0.86, 0.25), (0.95, 0.17), (1, 0.14),
               (1, 0.06)),
        bottom=((0.975, 0.04), (0.025, 0.04)),
        glass=(((0.1, 0.24), (0.1, 0.31), (0.3, 0.31), (0.3, 0.24)), ((0.835, 0.16), (0.855, 0.23), (0.88, 0.23),
               (0.935, 0.16))),
        glass_edges=(5,), pillars=(), wheels=(0.22, 0.85), wheel_r=0.05, belt=0.16,
        head=(0.985, 0.1, 1.0, 0.13), tail=(0.0, 0.1, 0.01, 0.15),
    ),
    "box_truck": BodyShape(
        upper=((0, 0.07), (0, 0.42), (0.01, 0.43), (0.69, 0.43), (0.7, 0.42), (0.7, 0.35), (0.73, 0.35), (0.95, 0.34),
               (0.98, 0.25), (1, 0.2), (1, 0.07)),
        bottom=((0.975, 0.05), (0.025, 0.05)),
        glass=(((0.78, 0.24), (0.78, 0.32), (0.93, 0.32), (0.96, 0.24)),),
        glass_edges=(7,), pillars=(), wheels=(0.2, 0.85), wheel_r=0.055, belt=0.22,
        head=(0.985, 0.12, 1.0, 0.15), tail=(0.0, 0.1, 0.01, 0.14),
    ),
})  # fmt: skip
MOTORCYCLE = "motorcycle"
# Each shape's vehicle kind, in the names of classifier.contract.VEHICLE_KINDS.
KIND_OF_SHAPE = {
    "sedan": "car", "hatchback": "car", "coupe": "car", "wagon": "car",
    "suv": "van_suv", "van": "van_suv",
    "pickup": "truck", "box_truck": "truck",
    "bus": "bus_rv", "rv": "bus_rv",
    MOTORCYCLE: "motorcycle",
}  # fmt: skip
VEHICLE_SHAPES = (*SHAPES, MOTORCYCLE)
SHAPES_OF_KIND = {kind: tuple(s for s in VEHICLE_SHAPES if KIND_OF_SHAPE[s] == kind) for kind in KIND_OF_SHAPE.values()}
# The kinds a listing's main vehicle is drawn as when a sample does not name one: the ordinary shapes most of the time
# (SHAPE_NAMES, by the scene's own draw), and now and then a kind the ordinary shapes lack.
RARE_KINDS = ("motorcycle", "bus_rv", "truck")
RARE_SHARE = 0.24


def main_shape(rnd: Rand, kind: str | None = None) -> str | None:
    """The main vehicle's shape: one of `kind`'s shapes, or (no kind) None for an ordinary one most of the time and now
    and then a rare kind's. `rnd` is a stream of its own, so that a None leaves the scene's draws as they were."""
    if kind is not None:
        if kind not in SHAPES_OF_KIND:
            raise ValueError(f"unknown vehicle kind {kind!r}; expected one of {', '.join(SHAPES_OF_KIND)}")
        return rnd.pick(SHAPES_OF_KIND[kind])
    if not rnd.chance(RARE_SHARE):
        return None
    kind = rnd.pick(RARE_KINDS)
    return rnd.pick(("box_truck",) if kind == "truck" else SHAPES_OF_KIND[kind])


@dataclass(frozen=True)
class View:
    x0: float  # screen x of the car's left end
    ground: float  # screen y of the ground line at the car's middle
    length: float  # screen length of the side
    facing: int  # +1: front to the right
    depth: tuple[float, float]  # screen offset of the far side
    persp: float  # relative height change from rear to front
    tilt: float  # ground slope
    hscale: float  # height jitter

    def p(self, u: float, v: float) -> Point:
        ux = u if self.facing > 0 else 1.0 - u
        s = 1.0 + self.persp * (u - 0.5)
        return (
            self.x0 + ux * self.length,
            self.ground + self.tilt * (ux - 0.5) * self.length - v * self.hscale * self.length * s,
        )

    def scale_at(self, u: float) -> float:
        return self.hscale * self.length * (1.0 + self.persp * (u - 0.5))


def make_view(rnd: Rand, *, center_x: float, ground: float, length: float, three_quarter: float = 0.5) -> View:
    """A random side or 3/4 view of a car of screen ``length`` centred on ``center_x``."""
    facing = rnd.sign()
    if rnd.chance(three_quarter):
        mag = rnd.uniform(0.08, 0.22) * length
        front = rnd.chance(0.7)
        dx = mag * facing * (1 if front else -1)
        dy = -rnd.uniform(0.05, 0.13) * length
        persp = (1 if front else -1) * mag / length * rnd.uniform(0.5, 0.9)
    else:
        dx = rnd.uniform(-0.02, 0.02) * length
        dy = -rnd.uniform(0.01, 0.045) * length
        persp = rnd.uniform(-0.04, 0.04)
    x0 = center_x - (length + dx) / 2
    return View(x0, ground, length, facing, (dx, dy), persp, rnd.uniform(-0.03, 0.03), rnd.uniform(0.94, 1.06))


def _orientation(poly: Sequence[Point]) -> float:
    n = len(poly)
    return sum(poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1] for i in range(n))


def _wheel_boxes(view: View, shape: BodyShape, offset: Point = (0.0, 0.0), k: float = 1.0) -> list[Quad]:
    squash = 1.0 - 0.5 * min(1.0, abs(view.depth[0]) / view.length)
    out = []
    for uw in shape.wheels:
        cx, cy = view.p(uw, shape.wheel_r)
        ry = shape.wheel_r * view.scale_at(uw) * k
        rx = ry * squash
        cx, cy = cx + offset[0], cy + offset[1]
        out.append((cx - rx, cy - ry, cx + rx, cy + ry))
    return out


def _paint_body(img: Image.Image, poly: list[Point], color: RGB, belt_y: float, rnd: Rand) -> None:
    x0, y0, x1, y1 = polygon_bounds(poly)
    w, h = x1 - x0 + 1, y1 - y0 + 1
    if w < 3 or h < 3:
        return
    fb = min(0.9, max(0.1, (belt_y - y0) / h))
    white = (255, 255, 255)
    stops = [
        (0.0, mix(color, white, 0.22)),
        (max(0.01, fb - 0.05), shade(color, 1.04)),
        (fb, mix(color, white, rnd.uniform(0.3, 0.5))),
        (min(0.97, fb + 0.06), color),
        (min(0.98, fb + 0.4), shade(color, 0.85)),
        (1.0, shade(color, 0.58)),
    ]
    col = np.array([s[1] for s in stops], dtype=float)
    ys = np.linspace(0, 1, h)
    base = np.stack([np.interp(ys, [s[0] for s in stops], col[:, i]) for i in range(3)], axis=1)
    xs = np.linspace(0, 1, w)
    hl = rnd.uniform(0.05, 0.3) * np.exp(-(((xs - rnd.uniform(0.2, 0.8)) / rnd.uniform(0.08, 0.25)) ** 2))
    arr = base[:, None, :] + hl[None, :, None] * (255.0 - base[:, None, :])
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in poly], fill=255)
    img.paste(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB"), (x0, y0), mask)


def _glass(img: Image.Image, draw: ImageDraw.ImageDraw, poly: list[Point], tint: RGB, rnd: Rand) -> None:
    paste_gradient(img, poly, [(0.0, mix(tint, (200, 210, 220), 0.35)), (0.6, tint), (1.0, shade(tint, 0.7))])
    if rnd.chance(0.6):
        x0, y0, x1, y1 = polygon_bounds(poly)
        w = x1 - x0
        a = x0 + rnd.uniform(0.1, 0.6) * w
        band = [(a, y1), (a + 0.12 * w, y1), (a + 0.25 * w, y0), (a + 0.13 * w, y0)]
        mask = Image.new("L", (w + 1, y1 - y0 + 1), 0)
        md = ImageDraw.Draw(mask)
        md.polygon([(x - x0, y - y0) for x, y in poly], fill=70)
        stripe = Image.new("L", mask.size, 0)
        ImageDraw.Draw(stripe).polygon([(x - x0, y - y0) for x, y in band], fill=255)

        img.paste((235, 240, 245), (x0, y0), ImageChops.multiply(mask, stripe))
    draw.line([*poly, poly[0]], fill=shade(tint, 0.5), width=1)


def _wheel(draw: ImageDraw.ImageDraw, box: Quad, rim: RGB, detail: bool, spokes: int) -> None:
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    draw.ellipse(box, fill=(28, 28, 30))
    draw.ellipse((cx - rx * 0.62, cy - ry * 0.62, cx + rx * 0.62, cy + ry * 0.62), fill=rim)
    if detail and rx > 6:
        dark = shade(rim, 0.45)
        for i in range(spokes):
            a = 2 * np.pi * i / spokes + 0.3
            draw.line(
                [
                    (cx + np.cos(a) * rx * 0.2, cy + np.sin(a) * ry * 0.2),
                    (cx + np.cos(a) * rx * 0.58, cy + np.sin(a) * ry * 0.58),
                ],
                fill=dark,
                width=max(1, int(rx * 0.08)),
            )
    draw.ellipse((cx - rx * 0.16, cy - ry * 0.16, cx + rx * 0.16, cy + ry * 0.16), fill=shade(rim, 0.6))


def _face_point(view: View, u: float, v: float, t: float) -> Point:
    x, y = view.p(u, v)
    return x + view.depth[0] * t, y + view.depth[1] * t


def _face_rect(view: View, u: float, v0: float, v1: float, t0: float, t1: float) -> list[Point]:
    return [
        _face_point(view, u, v0, t0),
        _face_point(view, u, v0, t1),
        _face_point(view, u, v1, t1),
        _face_point(view, u, v1, t0),
    ]


def draw_vehicle(
    img: Image.Image, rnd: Rand, color: RGB, view: View, *, shape: str | None = None, detail: bool = True
) -> Quad:
    """Draw one painted vehicle (`shape`: one of VEHICLE_SHAPES, else an ordinary one at random); returns its
    (unclipped) box in image pixels."""
    shape = shape or rnd.pick(SHAPE_NAMES)
    if shape == MOTORCYCLE:
        return draw_motorcycle(img, rnd, color, view, detail=detail)
    body = SHAPES[shape]
    draw = ImageDraw.Draw(img)
    dx, dy = view.depth
    upper = [view.p(u, v) for u, v in body.upper]
    poly = upper + [view.p(u, v) for u, v in body.bottom]
    tint = rnd.pick(((30, 38, 48), (45, 55, 70), (22, 24, 28), (60, 72, 86)))
    rim = rnd.pick(((190, 192, 196), (150, 152, 158), (60, 60, 64), (215, 215, 210), shade(color, 0.9)))
    far_wheels = _wheel_boxes(view, body, (dx, dy))
    for wb in far_wheels:
        draw.ellipse(wb, fill=(20, 20, 22))
    sign = 1.0 if _orientation(poly) > 0 else -1.0
    n_upper = len(upper)
    for i in range(n_upper - 1):
        (ax, ay), (bx, by) = upper[i], upper[i + 1]
        nx, ny = (by - ay) * sign, -(bx - ax) * sign
        if nx * dx + ny * dy <= 0:
            continue
        norm = max(1e-6, (nx * nx + ny * ny) ** 0.5)
        quad = [upper[i], upper[i + 1], (bx + dx, by + dy), (ax + dx, ay + dy)]
        if i in body.glass_edges:
            fill = mix(tint, (190, 205, 220), 0.3)
        else:
            fill = shade(color, 0.72 + 0.45 * max(0.0, -ny / norm))
        draw.polygon(quad, fill=fill, outline=shade(fill, 0.8))
        if detail and i in (0, n_upper - 2):
            _end_face(draw, view, body, i == n_upper - 2, color)
    if detail:
        _paint_body(img, poly, color, view.p(0.5, body.belt)[1], rnd)
    else:
        draw.polygon(poly, fill=color)
        draw.line(
            [view.p(0.02, body.belt - 0.01), view.p(0.98, body.belt - 0.01)], fill=mix(color, (255, 255, 255), 0.4)
        )
    draw.line([*poly, poly[0]], fill=shade(color, 0.55), width=1)
    for wb in _wheel_boxes(view, body, k=1.13):
        draw.chord(wb, 180, 360, fill=(18, 18, 20))
    for g in body.glass:
        if detail:
            _glass(img, draw, [view.p(u, v) for u, v in g], tint, rnd)
        else:
            draw.polygon([view.p(u, v) for u, v in g], fill=tint)
    width = max(1, int(view.length / 260))
    gb, gt = body.glass[0][0][1], body.glass[0][1][1]
    trim = rnd.pick((shade(color, 0.8), (25, 25, 28)))
    for pu in body.pillars:
        draw.line(
            [view.p(pu, gb - 0.005), view.p(pu + 0.012, gt + 0.01)], fill=trim, width=max(2, int(view.length * 0.018))
        )
    if detail:
        _details(draw, view, body, color, width)
    u0, v0, u1, v1 = body.head
    draw.polygon(
        [view.p(u0, v0), view.p(u1, v0), view.p(u1, v1), view.p(u0 + 0.01, v1)],
        fill=(238, 236, 225),
        outline=(90, 90, 90),
    )
    u0, v0, u1, v1 = body.tail
    draw.polygon([view.p(u0, v0), view.p(u1, v0), view.p(u1, v1), view.p(u0, v1)], fill=(170, 20, 22))
    for wb in _wheel_boxes(view, body):
        _wheel(draw, wb, rim, detail, 5)
    pts = poly + [(x + dx, y + dy) for x, y in upper]
    xs = [p[0] for p in pts] + [b[0] for b in far_wheels] + [b[2] for b in far_wheels]
    ys = [p[1] for p in pts] + [view.p(u, 0)[1] for u in body.wheels]
    return min(xs), min(ys), max(xs), max(ys)


def _details(draw: ImageDraw.ImageDraw, view: View, body: BodyShape, color: RGB, width: int) -> None:
    line = shade(color, 0.55)
    low = body.bottom[0][1] + 0.025
    front_glass = max(body.glass, key=lambda g: g[-1][0])
    doors = sorted({*body.pillars, front_glass[-1][0] - 0.005})
    if len(body.glass) == 1 and body.glass[0][0][0] > 0.1:
        doors.append(body.glass[0][0][0] + 0.03)
    for du in doors:
        draw.line([view.p(du, body.belt - 0.004), view.p(du, low)], fill=line, width=width)
        hu = du - 0.07
        draw.rectangle(
            _bounds([view.p(hu, body.belt - 0.03), view.p(hu + 0.035, body.belt - 0.022)]), fill=shade(color, 0.6)
        )
    mu = front_glass[-1][0]
    mirror = [
        view.p(mu - 0.01, body.belt + 0.003),
        view.p(mu + 0.025, body.belt + 0.003),
        view.p(mu + 0.025, body.belt + 0.03),
        view.p(mu, body.belt + 0.028),
    ]
    draw.polygon(mirror, fill=shade(color, 0.8), outline=line)
    draw.line(
        [
            view.p(body.wheels[0] + body.wheel_r * 1.2, low - 0.01),
            view.p(body.wheels[1] - body.wheel_r * 1.2, low - 0.01),
        ],
        fill=line,
        width=width,
    )


def _end_face(draw: ImageDraw.ImageDraw, view: View, body: BodyShape, front: bool, color: RGB) -> None:
    u = 1.0 if front else 0.0
    lo, hi = body.upper[-1][1] if front else body.upper[0][1], body.upper[-2][1] if front else body.upper[1][1]
    h = hi - lo
    lamp = (238, 236, 225) if front else (175, 18, 22)
    lv0, lv1 = lo + h * 0.55, lo + h * 0.85
    draw.polygon(_face_rect(view, u, lv0, lv1, 0.04, 0.24), fill=lamp, outline=(70, 70, 70))
    draw.polygon(_face_rect(view, u, lv0, lv1, 0.76, 0.96), fill=lamp, outline=(70, 70, 70))
    if front:
        draw.polygon(
            _face_rect(view, u, lo + h * 0.2, lo + h * 0.62, 0.3, 0.7), fill=(25, 25, 28), outline=shade(color, 0.5)
        )
    draw.polygon(_face_rect(view, u, lo + h * 0.02, lo + h * 0.2, 0.4, 0.6), fill=(225, 225, 220))


def _bounds(points: Sequence[Point]) -> Quad:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def draw_silhouette(
    draw: ImageDraw.ImageDraw, rnd: Rand, view: View, fill: RGB, background: RGB, *, shape: str | None = None
) -> Quad:
    """A flat, vector-style car: one colour, no shading (what placeholder graphics use). `shape`: one of SHAPES,
    default an ordinary one at random."""
    body = SHAPES[shape or rnd.pick(SHAPE_NAMES)]
    poly = [view.p(u, v) for u, v in body.upper + body.bottom]
    draw.polygon(poly, fill=fill)
    style = rnd.integer(0, 2)
    if style > 0:
        window = background if style == 1 else mix(fill, (255, 255, 255), 0.5)
        for g in body.glass:
            draw.polygon([view.p(u, v) for u, v in g], fill=window)
        for pu in body.pillars:
            draw.line(
                [view.p(pu, body.belt), view.p(pu + 0.012, body.glass[0][1][1] + 0.01)],
                fill=fill,
                width=max(2, int(view.length * 0.02)),
            )
    wheels = _wheel_boxes(view, body)
    for wb in _wheel_boxes(view, body, k=1.18):
        draw.ellipse(wb, fill=background)
    for wb in wheels:
        draw.ellipse(wb, fill=fill)
        if style == 2:
            cx, cy, r = (wb[0] + wb[2]) / 2, (wb[1] + wb[3]) / 2, (wb[2] - wb[0]) * 0.22
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=background)
    return _bounds(poly + [(b[0], b[1]) for b in wheels] + [(b[2], b[3]) for b in wheels])


def draw_motorcycle(img: Image.Image, rnd: Rand, color: RGB, view: View, *, detail: bool = True) -> Quad:
    """A motorcycle in side or 3/4 view: two big wheels, a painted tank and fenders, a dark seat, engine and fork.
    ``color`` is the paint (tank, fenders, fairing). Returns its (unclipped) box in image pixels."""
    draw = ImageDraw.Draw(img)
    r = 0.15
    wheels = (0.17, 0.83)
    dx, dy = view.depth[0] * 0.35, view.depth[1] * 0.35  # a bike is narrow: little of its far side shows
    boxes = []
    for uw in wheels:
        cx, cy = view.p(uw, r)
        ry = r * view.scale_at(uw)
        rx = ry * (1.0 - 0.45 * min(1.0, abs(view.depth[0]) / view.length))
        boxes.append((cx - rx, cy - ry, cx + rx, cy + ry))
    metal = rnd.pick(((170, 172, 176), (90, 92, 96), (40, 40, 44)))
    width = max(2, int(view.length * 0.025))
    engine = [view.p(u, v) for u, v in ((0.38, 0.2), (0.38, 0.33), (0.6, 0.35), (0.62, 0.22), (0.5, 0.16))]
    draw.polygon([(x + dx, y + dy) for x, y in engine], fill=shade(metal, 0.7))
    draw.polygon(engine, fill=metal, outline=shade(metal, 0.5))
    draw.line([view.p(0.45, 0.17), view.p(0.17, r)], fill=(35, 35, 38), width=width)  # swing arm
    draw.line([view.p(0.3, 0.22), view.p(0.05, 0.26)], fill=(150, 150, 155), width=width)  # exhaust
    for x0, y0, x1, y1 in boxes:
        draw.ellipse((x0, y0, x1, y1), fill=(24, 24, 26))
        kx, ky = (x1 - x0) * 0.18, (y1 - y0) * 0.18
        draw.ellipse((x0 + kx, y0 + ky, x1 - kx, y1 - ky), fill=(150, 152, 158) if detail else (60, 60, 64))
        hx, hy = (x1 - x0) * 0.42, (y1 - y0) * 0.42
        draw.ellipse((x0 + hx, y0 + hy, x1 - hx, y1 - hy), fill=(60, 60, 64))
    draw.line([view.p(0.83, r), view.p(0.72, 0.55)], fill=(185, 185, 190), width=width)  # fork
    fenders = (((0.04, 0.33), (0.04, 0.38), (0.3, 0.41), (0.3, 0.33)), ((0.76, 0.3), (0.74, 0.33), (0.92, 0.33),
               (0.93, 0.29)))  # fmt: skip
    for fender in fenders:
        draw.polygon([view.p(u, v) for u, v in fender], fill=shade(color, 0.9))
    side = [view.p(u, v) for u, v in ((0.2, 0.4), (0.3, 0.3), (0.44, 0.3), (0.46, 0.41))]
    draw.polygon(side, fill=color, outline=shade(color, 0.55))  # side panel
    draw.polygon(
        [view.p(u, v) for u, v in ((0.2, 0.4), (0.2, 0.45), (0.47, 0.47), (0.5, 0.41))], fill=(28, 28, 30)
    )  # seat
    tank = [view.p(u, v) for u, v in ((0.44, 0.36), (0.46, 0.5), (0.6, 0.55), (0.72, 0.51), (0.7, 0.35))]
    if detail:
        _paint_body(img, tank, color, view.p(0.57, 0.45)[1], rnd)
    else:
        draw.polygon(tank, fill=color)
    draw.line([*tank, tank[0]], fill=shade(color, 0.55), width=1)
    if rnd.chance(0.5):  # a fairing around the headlight
        fairing = [view.p(u, v) for u, v in ((0.7, 0.4), (0.73, 0.58), (0.8, 0.6), (0.84, 0.42))]
        draw.polygon(fairing, fill=color, outline=shade(color, 0.55))
    hx, hy = view.p(0.82, 0.5)
    hr = 0.035 * view.scale_at(0.82)
    draw.ellipse((hx - hr, hy - hr, hx + hr, hy + hr), fill=(238, 236, 225), outline=(80, 80, 80))
    draw.line([view.p(0.7, 0.6), view.p(0.76, 0.57)], fill=(30, 30, 32), width=max(1, width // 2))  # handlebar
    tx, ty = view.p(0.03, 0.4)
    draw.rectangle((tx - hr * 0.6, ty - hr * 0.4, tx + hr * 0.6, ty + hr * 0.4), fill=(170, 20, 22))
    points = [view.p(0.7, 0.6), view.p(0.8, 0.6), view.p(0.03, 0.42), *tank]
    xs = [p[0] for p in points] + [b[0] for b in boxes] + [b[2] for b in boxes]
    ys = [p[1] for p in points] + [b[1] for b in boxes] + [b[3] for b in boxes]
    return min(xs), min(ys), max(xs), max(ys)
