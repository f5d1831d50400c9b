"""Helpers of the dataset export tests: real stored JPEGs, placements and human labels."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from catalog.imaging import inspect_image
from catalog.models import ImageAsset, Placement, Sitemap
from catalog.services.assets import asset_get_or_create
from reviews.models import ManualFix
from tests.factories import ListingFactory, PlacementFactory


def jpeg(seed: int, size: tuple[int, int] = (96, 72), image: Image.Image | None = None) -> bytes:
    """A JPEG of random pixels (distinct bytes per seed), or of `image`."""
    if image is None:
        pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def stored_asset(seed: int, size: tuple[int, int] = (96, 72), image: Image.Image | None = None) -> ImageAsset:
    """An asset with its original and thumbnail in storage, as a Run stores a downloaded photo."""
    data = jpeg(seed, size, image)
    asset, _ = asset_get_or_create(facts=inspect_image(data), data=data)
    return asset


def show(sitemap: Sitemap, asset: ImageAsset, *, listing=None, status: str = "ok", **kwargs) -> Placement:
    """The asset as a live image of a listing of the sitemap (a new listing unless given)."""
    return PlacementFactory(listing=listing or ListingFactory(sitemap=sitemap), asset=asset, status=status, **kwargs)


def label(placement: Placement, new_label: str, *, task: str = "image_type", source: str = "staff", **kwargs):
    """A fix in the placement's scope, recorded as the services record it."""
    return ManualFix.objects.create(
        advertiser_id=placement.listing.sitemap.advertiser_id,
        asset_id=placement.asset_id,
        task=task,
        new_label=new_label,
        source=source,
        **kwargs,
    )
