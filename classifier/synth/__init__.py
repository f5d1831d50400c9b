"""Procedural, labelled training images for the starter models (no downloads, no datasets).

Every sample is a pure function of its seed: all randomness comes from ``np.random.default_rng(seed)``,
so the same seed gives the same pixels. Measured on our shared 2-core machine (mean per image, 320x240 /
640x480): Dealer ~8 / ~22 ms, Stock ~2.5 / ~6 ms, Placeholder ~2 / ~3 ms, product ~4 / ~8 ms; ``sample``
averages ~4 / ~10 ms. ``python -m classifier.synth --out sheet.png`` writes a contact sheet to look at.

What the labels mean here:

* ``image_type`` (vehicle samples only, ``""`` otherwise): *Dealer* is a simulated photo (lot or showroom
  with clutter, other cars, banners, lighting jitter, sensor noise, occasional blur, vignetting, a JPEG
  re-encode at quality 40-90); *Stock* is a clean render of one car on white/near-white with a soft
  shadow and no noise; *Placeholder* is a flat graphic ("image coming soon" cards, dealer logos, flat car
  silhouettes, camera icons, stripes), always with ``color == ""`` and intent "No Shopping Intent".
* ``color`` is the paint of the main car (``box``), drawn from a per-label distribution (``colors.py``).
* ``intent``: vehicle samples are "Tools, Vehicles, Electronics & Appliances"; products and scenery cover
  the four classes.
* ``sensitive`` is a documented **proxy**: we cannot and do not generate real sensitive content. About 8%
  of product samples show a weapon-like silhouette (knife, pistol, rifle) and only those are "sensitive".
  A sensitivity head trained on this data learns "weapon-like silhouette", nothing more; it must not be
  taken as a real sensitive-content detector.

``box`` is the biggest vehicle (``boxes[0]``); ``boxes`` also lists the other cars of a dealer scene
(smaller, possibly partly hidden; background cars more than half hidden are left out).
"""

from __future__ import annotations

import io

import numpy as np

from .labels import COLORS, IMAGE_TYPES, INTENT_LABELS, SENSITIVE_LABELS, Sample
from .products import SENSITIVE_SHARE, product_sample
from .scenes import vehicle_sample

VEHICLE_SHARE = 0.6

__all__ = [
    "COLORS",
    "IMAGE_TYPES",
    "INTENT_LABELS",
    "SENSITIVE_LABELS",
    "SENSITIVE_SHARE",
    "VEHICLE_SHARE",
    "Sample",
    "dealer_photo_jpeg",
    "drifted_sample",
    "product_sample",
    "sample",
    "vehicle_sample",
]


def sample(seed: int, *, size: tuple[int, int] = (640, 480)) -> Sample:
    """A vehicle (~60%) or product/scenery (~40%) sample, chosen by the seed."""
    if np.random.default_rng([seed, 0x5EED]).random() < VEHICLE_SHARE:
        return vehicle_sample(seed, size=size)
    return product_sample(seed, size=size)


def dealer_photo_jpeg(seed: int, *, size: tuple[int, int] = (1024, 768), quality: int = 85) -> bytes:
    """A Dealer vehicle photo encoded as JPEG (for demos and for tests that need real image bytes)."""
    buf = io.BytesIO()
    vehicle_sample(seed, image_type="Dealer", size=size).image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def drifted_sample(seed: int, *, size: tuple[int, int] = (640, 480), kind: str | None = None) -> Sample:
    """A photo of a "drifted advertiser" the starter models never saw: a real car (Dealer) shot in a white
    photo booth, with its true paint ``color`` (see ``styles.py``). A pure function of the seed."""
    from .styles import drifted_sample as _drifted

    return _drifted(seed, size=size, kind=kind)
