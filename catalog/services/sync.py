"""Upserting what a source lists into Listings and Placements, in bulk."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import transaction

from catalog.inventory import Page
from catalog.models import Listing, Placement, Sitemap
from catalog.signals import listings_synced

BATCH_SIZE = 2000


def listing_key(page: Page) -> str:
    return (page.external_id or page.loc)[:2048]


@transaction.atomic
def inventory_sync(*, sitemap: Sitemap, pages: Sequence[Page], seen_at: datetime, complete: bool) -> int:
    """Upserts the pages as listings and their image URLs as placements; returns the number of listings.

    Everything seen is stamped with `seen_at` (the Run's start, so a resumed Run upserts the same rows).
    A placement that left a listing which was read is marked gone. Listings missing from the source are
    marked gone only when the source was read `complete`ly: a truncated sitemap must not make half an
    inventory disappear. Nothing is deleted: history stays.
    """
    listings = {
        listing_key(page): Listing(
            sitemap=sitemap,
            key=listing_key(page),
            external_id=page.external_id[:200],
            url=page.loc[:2048],
            title=page.title[:500],
            attributes=page.attributes,
            lastmod=page.lastmod,
            is_gone=False,
            last_seen_at=seen_at,
        )
        for page in pages
    }
    Listing.objects.bulk_create(
        listings.values(),
        batch_size=BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["sitemap", "key"],
        update_fields=["external_id", "url", "title", "attributes", "lastmod", "is_gone", "last_seen_at"],
    )
    listing_ids = dict(Listing.objects.filter(sitemap=sitemap, last_seen_at=seen_at).values_list("key", "id"))

    placements: list[Placement] = []
    for page in pages:
        listing_id = listing_ids[listing_key(page)]
        placements.extend(
            Placement(listing_id=listing_id, url=url[:2048], position=position, is_gone=False, last_seen_at=seen_at)
            for position, url in enumerate(page.images)
        )
    Placement.objects.bulk_create(
        placements,
        batch_size=BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["listing", "url"],
        update_fields=["position", "is_gone", "last_seen_at"],
    )

    Placement.objects.filter(listing__sitemap=sitemap, listing__last_seen_at=seen_at, is_gone=False).exclude(
        last_seen_at=seen_at
    ).update(is_gone=True)
    if complete:
        Listing.objects.filter(sitemap=sitemap, is_gone=False).exclude(last_seen_at=seen_at).update(is_gone=True)
        Placement.objects.filter(listing__sitemap=sitemap, listing__is_gone=True, is_gone=False).update(is_gone=True)
    sitemap.live_images = Placement.objects.filter(
        listing__sitemap=sitemap, is_gone=False, listing__is_gone=False
    ).count()
    sitemap.save(update_fields=["live_images", "updated_at"])
    listings_synced.send(sender=Sitemap, sitemap_id=sitemap.pk)
    return len(listings)
