"""manage.py measure_near_duplicates: what the near-duplicate rule (catalog.services.clusters.near_duplicates) takes for
"the same picture", measured on generated pictures (classifier.synth): copies against other paints and other photos.

The sets, each a list of pairs of inspected pictures (catalog.imaging.inspect_image, as a Run makes the keys):
- re-encode: one Stock render or Dealer photo against its copies: JPEG quality 60-95 x resize 50-100%, WebP, PNG;
- backfill: the signature computed at fetch against the one computed from the stored thumbnail (migration 0008);
- other paint: the same render or photo (same scene, same car) in each other color;
- other photo: two different scenes of the same kind and the same color;
- generated: every pair of a random set of generated vehicle pictures (the issue's 350), whose colors differ or not
  (Placeholders have no color: their pairs count as the same color).
A false carry is a pair of other paints, other photos or generated pictures taken as near-duplicates; a missed carry
is a re-encode (or a backfill) that is not.
"""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.management.base import CommandParser
from PIL import Image

from catalog.imaging import (
    ImageFacts,
    color_distance,
    color_signature,
    color_signature_array,
    inspect_image,
    near_duplicates,
    phash_distance,
)
from config.commands import BaseCommand

SIZE = (1024, 768)
QUALITIES = (60, 75, 95)
SCALES = (0.5, 0.75, 1.0)
SWEEP = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0)


@dataclass
class PairSet:
    name: str
    bits: np.ndarray  # pHash distance of each pair
    signatures: tuple[np.ndarray, np.ndarray]  # color_signature_array rows of each side
    same_picture: bool  # what the rule should say of these pairs

    @classmethod
    def of(cls, name: str, pairs: Sequence[tuple[ImageFacts, ImageFacts]], *, same_picture: bool) -> PairSet:
        return cls(
            name,
            np.array([phash_distance(a.phash, b.phash) for a, b in pairs], dtype=np.int64),
            (
                color_signature_array(a.color_signature for a, _ in pairs),
                color_signature_array(b.color_signature for _, b in pairs),
            ),
            same_picture,
        )

    @property
    def colors(self) -> np.ndarray:
        """The color signature distance of each pair (delta E of the most different cell)."""
        return color_distance(*self.signatures)

    def taken(self, *, max_distance: int, max_color_distance: float) -> int:
        """How many pairs the rule takes for the same picture."""
        near = near_duplicates(
            self.bits, *self.signatures, max_distance=max_distance, max_color_distance=max_color_distance
        )
        return int(near.sum())

    def wrong(self, *, max_distance: int, max_color_distance: float) -> int:
        """Missed carries (same picture, not taken) or false carries (another picture, taken)."""
        taken = self.taken(max_distance=max_distance, max_color_distance=max_color_distance)
        return len(self.bits) - taken if self.same_picture else taken


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def copies(data: bytes) -> list[bytes]:
    """A picture's copies as a CDN or another site makes them: JPEG at each quality and scale, WebP, PNG."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    out = []
    for quality, scale in itertools.product(QUALITIES, SCALES):
        size = (round(image.width * scale), round(image.height * scale))
        out.append(_encode(image.resize(size, Image.Resampling.LANCZOS), "JPEG", quality=quality))
    half = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
    out += [_encode(image, "WEBP", quality=80), _encode(half, "WEBP", quality=60), _encode(half, "PNG")]
    return out


def render(seed: int, kind: str, color: str) -> bytes:
    """The scene of `seed` (a Stock render or a Dealer photo) with its car painted `color`, as a JPEG."""
    from classifier.synth import vehicle_sample

    sample = vehicle_sample(seed, image_type=kind, color=color, size=SIZE, repaintable=True)
    return _encode(sample.image, "JPEG", quality=90)


def measure(*, scenes: int, generated: int, seed: int, log: Callable[[str], None]) -> list[PairSet]:
    """The pair sets (module docstring) for `scenes` scenes of each kind and `generated` random pictures."""
    from classifier.synth import COLORS, vehicle_sample

    rng = np.random.default_rng(seed)
    sets, backfilled = [], []
    for kind in ("Stock", "Dealer"):
        log(f"{kind}: {scenes} scenes in {len(COLORS)} paints, and their copies")
        seeds = [int(value) for value in rng.integers(0, 2**31, size=scenes)]
        by_scene = [{color: inspect_image(render(s, kind, color)) for color in COLORS} for s in seeds]
        reencoded, paints = [], []
        for scene, s in zip(by_scene, seeds, strict=True):
            color = COLORS[s % len(COLORS)]
            original = scene[color]
            reencoded += [(original, inspect_image(copy)) for copy in copies(render(s, kind, color))]
            paints += [(scene[a], scene[b]) for a, b in itertools.combinations(COLORS, 2)]
            stored = Image.open(io.BytesIO(original.thumbnail_jpeg)).convert("RGB")
            backfilled.append((original, _with_signature(original, color_signature(stored))))
        photos = [(a[color], b[color]) for a, b in itertools.combinations(by_scene, 2) for color in COLORS]
        sets += [
            PairSet.of(f"re-encode, {kind}", reencoded, same_picture=True),
            PairSet.of(f"other paint, {kind}", paints, same_picture=False),
            PairSet.of(f"other photo, {kind}", photos, same_picture=False),
        ]
    log(f"{generated} generated vehicle pictures (any kind, any color)")
    samples = [vehicle_sample(int(value), size=SIZE) for value in rng.integers(0, 2**31, size=generated)]
    facts = [inspect_image(_encode(sample.image, "JPEG", quality=90)) for sample in samples]
    same_color: list[tuple[ImageFacts, ImageFacts]] = []
    other_color: list[tuple[ImageFacts, ImageFacts]] = []
    for (a, sample_a), (b, sample_b) in itertools.combinations(zip(facts, samples, strict=True), 2):
        (same_color if sample_a.color == sample_b.color else other_color).append((a, b))
    return [
        *sets,
        PairSet.of("backfill", backfilled, same_picture=True),
        PairSet.of("generated, colors differ", other_color, same_picture=False),
        PairSet.of("generated, same color", same_color, same_picture=False),
    ]


def _with_signature(facts: ImageFacts, signature: str) -> ImageFacts:
    return ImageFacts(**{**facts.__dict__, "color_signature": signature})


def signature_cost_ms(repeat: int = 1000) -> float:
    """Mean CPU time of color_signature on a thumbnail-sized decode (320 x 240), in ms: CPU time, as the machine
    may be shared."""
    thumbnail = Image.open(io.BytesIO(render(1, "Dealer", "Blue"))).convert("RGB").resize((320, 240))
    started = time.thread_time()
    for _ in range(repeat):
        color_signature(thumbnail)
    return (time.thread_time() - started) / repeat * 1000


def _spread(values: np.ndarray, fmt: str) -> str:
    if not len(values):
        return "-"
    points = np.percentile(values, [0, 1, 50, 99, 100])
    return " / ".join(format(value, fmt) for value in points)


class Command(BaseCommand):
    help = (
        "Measures the near-duplicate rule on generated pictures: pHash bits and color signature distances of "
        "re-encodes, of the same render or photo in other paints and of other photos, and the false and missed "
        "carries at the configured thresholds (CARRY_FORWARD_MAX_DISTANCE, CARRY_FORWARD_MAX_COLOR_DISTANCE)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--scenes", type=int, default=12, help="Scenes of each kind (Stock, Dealer).")
        parser.add_argument("--generated", type=int, default=350, help="Random generated pictures.")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: object, scenes: int, generated: int, seed: int, **options: object) -> None:
        bits_limit, color_limit = settings.CARRY_FORWARD_MAX_DISTANCE, settings.CARRY_FORWARD_MAX_COLOR_DISTANCE
        sets = measure(scenes=scenes, generated=generated, seed=seed, log=self.stderr.write)
        write = self.stdout.write
        header = f"{'pairs':<28}{'count':>7}  {'pHash bits min/p1/median/p99/max':<34}color dE min/p1/median/p99/max"
        write(header)
        for pairs in sets:
            bits = "-" if pairs.name == "backfill" else _spread(pairs.bits, ".0f")
            write(f"{pairs.name:<28}{len(pairs.bits):>7}  {bits:<34}{_spread(pairs.colors, '.1f')}")
        write(f"\nAt {bits_limit} bits: pairs within the bits alone, and within the bits and {color_limit} dE:")
        for pairs in sets:
            alone = int((pairs.bits <= bits_limit).sum())
            taken = pairs.taken(max_distance=bits_limit, max_color_distance=color_limit)
            wrong = pairs.wrong(max_distance=bits_limit, max_color_distance=color_limit)
            kind = "missed" if pairs.same_picture else "false carries"
            share = wrong / max(1, len(pairs.bits))
            write(f"  {pairs.name:<28}bits alone {alone:>6}   rule {taken:>6}   {kind} {wrong} ({share:.2%})")
        write(f"\nColor threshold sweep at {bits_limit} bits (missed copies / false carries, all sets):")
        for limit in SWEEP:
            missed = sum(p.wrong(max_distance=bits_limit, max_color_distance=limit) for p in sets if p.same_picture)
            false = sum(p.wrong(max_distance=bits_limit, max_color_distance=limit) for p in sets if not p.same_picture)
            write(f"  {limit:>5.1f} dE: missed {missed:>5}   false carries {false:>6}")
        write(f"\ncolor_signature: {signature_cost_ms():.3f} ms of CPU a picture (320 x 240 decode)")
