"""Reads of the catalog. Visibility rules live here: staff see everything, others their advertisers only."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from .models import Advertiser, Membership, Placement, Run, Sitemap

AnyUser = User | AnonymousUser


def advertisers_visible_to(user: AnyUser) -> QuerySet[Advertiser]:
    if not user.is_authenticated:
        return Advertiser.objects.none()
    if user.is_staff:
        return Advertiser.objects.all()
    return Advertiser.objects.filter(memberships__user=user)


def user_can_edit(user: AnyUser, advertiser_id: int) -> bool:
    """Whether the user may change an advertiser's data (start a Run, fix or revert a tag): staff, or an editor of
    the advertiser. Viewers read only. The one rule every write route and screen asks."""
    if not user.is_authenticated:
        return False
    if user.is_staff:
        return True
    return Membership.objects.filter(user=user, advertiser_id=advertiser_id, role=Membership.Role.EDITOR).exists()


def sitemaps_visible_to(user: AnyUser) -> QuerySet[Sitemap]:
    return Sitemap.objects.filter(advertiser__in=advertisers_visible_to(user)).select_related("advertiser")


def runs_visible_to(user: AnyUser) -> QuerySet[Run]:
    return Run.objects.filter(sitemap__in=sitemaps_visible_to(user)).select_related("sitemap")


def placements_visible_to(user: AnyUser) -> QuerySet[Placement]:
    """Images (placements) of the sitemaps the user may see, with their picture and advertiser loaded."""
    return Placement.objects.filter(listing__sitemap__in=sitemaps_visible_to(user)).select_related(
        "asset", "listing__sitemap__advertiser"
    )
