"""A sitemap with real thumbnails and model tags, for the grid's browser tests."""

import io

from django.core.files.storage import default_storage
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from classifier.models import Classification
from reviews.effective_store import effective_tags_refresh
from tests.factories import ImageAssetFactory, ListingFactory, PlacementFactory, SitemapFactory

RGB = {"red": (200, 30, 30), "green": (30, 160, 40), "blue": (30, 60, 200)}


def thumbnail(asset, color, n):
    """A 320x240 JPEG (the thumbnail size the pipeline stores): a colored car-like block on a light ground."""
    image = Image.new("RGB", (320, 240), (235, 235, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40 + n % 5 * 6, 90, 280, 180), fill=RGB[color])
    draw.ellipse((70, 160, 120, 210), fill=(20, 20, 20))
    draw.ellipse((200, 160, 250, 210), fill=(20, 20, 20))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    default_storage.save(asset.thumbnail.name, io.BytesIO(buffer.getvalue()))
    default_storage.save(asset.original.name, io.BytesIO(buffer.getvalue()))


def sitemap_of(model, n, *, pictures=None):
    """n images in listings of 4, colored red/green/blue in turn, the model's color tag on each with confidences
    from 0.27 to 0.97 (every third one below 0.5). Thumbnails for the first `pictures` (all by default)."""
    sitemap = SitemapFactory()
    placements = []
    listing = None
    for i in range(n):
        if i % 4 == 0:
            listing = ListingFactory(sitemap=sitemap, external_id=f"VIN-{i // 4}")
        color = ("red", "green", "blue")[i % 3]
        asset = ImageAssetFactory(width=320, height=240)
        if pictures is None or i < pictures:
            thumbnail(asset, color, i)
        placement = PlacementFactory(listing=listing, position=i % 4, status="ok", asset=asset)
        confidence = 0.27 if i % 3 == 1 else 0.92
        Classification.objects.create(
            asset=asset, model_version=model, task="color", label=color, confidence=confidence,
            margin=confidence / 2, scores={color: confidence},
        )  # fmt: skip
        placements.append(placement)
    effective_tags_refresh(sitemap_id=sitemap.pk)  # rows made outside the pipeline's writers
    return sitemap, placements


def settled(page):
    """Waits until htmx has settled the grid's last swap: it binds the new content's hx- attributes only then (20 ms
    after the swap), and a change made before would go unheard."""
    expect(page.locator("#grid.htmx-settling, #grid .htmx-added, #grid.htmx-swapping")).to_have_count(0)
