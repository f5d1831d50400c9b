"""Image assets: one row per distinct content, with its original and thumbnail in storage."""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from catalog.imaging import ImageFacts
from catalog.models import ImageAsset


def asset_storage_names(facts: ImageFacts) -> tuple[str, str]:
    """Content-addressed names: the same bytes always land at the same place, whoever stores them."""
    prefix = facts.sha256[:2]
    return (
        f"originals/{prefix}/{facts.sha256}.{facts.extension}",
        f"thumbnails/{prefix}/{facts.sha256}.jpg",
    )


def asset_get_or_create(*, facts: ImageFacts, data: bytes) -> tuple[ImageAsset, bool]:
    """The asset for these bytes, created with its stored original and thumbnail if new.

    Call it for bytes not known a moment ago (the Run looks the SHA-256 up before decoding). Safe under
    concurrency and re-runs: files are content-addressed (a file left by a worker that died before its row
    was written is reused) and the row is keyed by SHA-256, so a lost race returns the winner's row.
    """
    original_name, thumbnail_name = asset_storage_names(facts)
    if not default_storage.exists(original_name):
        original_name = default_storage.save(original_name, ContentFile(data))
    if not default_storage.exists(thumbnail_name):
        thumbnail_name = default_storage.save(thumbnail_name, ContentFile(facts.thumbnail_jpeg))
    try:
        with transaction.atomic():
            asset = ImageAsset.objects.create(
                sha256=facts.sha256,
                phash=facts.phash,
                width=facts.width,
                height=facts.height,
                format=facts.format,
                byte_size=facts.byte_size,
                original=original_name,
                thumbnail=thumbnail_name,
            )
    except IntegrityError:  # another worker created it meanwhile
        return ImageAsset.objects.get(sha256=facts.sha256), False
    return asset, True
