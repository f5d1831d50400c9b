"""Writes to the catalog."""

from typing import Any

from django.db import transaction

from catalog.models import Advertiser, Membership, Sitemap


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


@transaction.atomic
def membership_grant(*, user: Any, advertiser: Advertiser, role: str) -> tuple[Membership, str | None]:
    """Gives the user access to the advertiser's data in the portal with this role (Membership.Role), or changes the
    role of the access they have; returns the membership and the role it had before (None: it is new)."""
    membership, created = Membership.objects.select_for_update().get_or_create(
        user=user, advertiser=advertiser, defaults={"role": role}
    )
    before = None if created else membership.role
    if before is not None and before != role:
        membership.role = role
        membership.save(update_fields=["role", "updated_at"])
    return membership, before
