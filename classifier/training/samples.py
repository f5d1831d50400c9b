"""The generator's two domains as seen by training and evaluation (no torch here).

``vehicle``: Dealer / Stock / Placeholder listing photos with their boxes and colour; ``intent``: shopping
scenes (fashion, home and garden, tools and vehicles, no shopping intent) with the sensitive flag.
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image

from classifier.preprocess import decode
from classifier.synth import COLORS, Sample, product_sample, vehicle_sample

Domain = Literal["vehicle", "intent"]
JPEG_QUALITY = 88  # what a CDN typically serves


# Share of vehicle listing photos among the intent model's images; the rest are products and scenery, which
# cover the four intent classes (vehicles are all "Tools, Vehicles, ...", placeholders "No Shopping Intent").
INTENT_VEHICLE_SHARE = 0.25


def generate(seed: int, domain: Domain) -> Sample:
    """The sample of ``seed`` in a domain: a pure function of both."""
    if domain == "vehicle":
        return vehicle_sample(seed)
    if np.random.default_rng([seed, 0x1A7E]).random() < INTENT_VEHICLE_SHARE:
        return vehicle_sample(seed)
    return product_sample(seed)


def color_label(sample: Sample) -> str | None:
    """The colour to learn and score, or None (placeholders, even with a car silhouette, have none)."""
    return sample.color if sample.color in COLORS else None


def jpeg_bytes(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def as_received(image: Image.Image, min_size: int) -> tuple[Image.Image, float]:
    """The image as the pipeline sees it: JPEG-encoded (as a CDN serves it), then decoded by
    ``preprocess.decode`` for a model input of ``min_size`` (JPEG draft scaling). Returns it and its scale."""
    decoded = decode(jpeg_bytes(image), min_size=min_size)
    return decoded.image, decoded.scale
