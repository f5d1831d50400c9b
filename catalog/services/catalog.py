"""Writes to the catalog."""

from django.db import transaction

from catalog.models import Advertiser, Sitemap


@transaction.atomic
def advertiser_get_or_create(*, slug: str, name: str | None = None) -> Advertiser:
    """The advertiser with this slug, created (named after the slug unless a name is given) if missing."""
    advertiser, _ = Advertiser.objects.get_or_create(slug=slug, defaults={"name": name or slug})
    return advertiser


@transaction.atomic
def sitemap_get_or_create(
    *, advertiser: Advertiser, url: str, kind: str = Sitemap.Kind.SITEMAP, name: str = ""
) -> Sitemap:
    """The advertiser's sitemap at this URL, created with every task enabled if missing."""
    sitemap, _ = Sitemap.objects.get_or_create(advertiser=advertiser, url=url, defaults={"kind": kind, "name": name})
    return sitemap
