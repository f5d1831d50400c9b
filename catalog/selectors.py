"""Reads of the catalog. Visibility rules live here: staff see everything, others their advertisers only."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from .models import Advertiser, Placement, Run, Sitemap

AnyUser = User | AnonymousUser


def advertisers_visible_to(user: AnyUser) -> QuerySet[Advertiser]:
    if not user.is_authenticated:
        return Advertiser.objects.none()
    if user.is_staff:
        return Advertiser.objects.all()
    return Advertiser.objects.filter(memberships__user=user)


def sitemaps_visible_to(user: AnyUser) -> QuerySet[Sitemap]:
    return Sitemap.objects.filter(advertiser__in=advertisers_visible_to(user)).select_related("advertiser")


def runs_visible_to(user: AnyUser) -> QuerySet[Run]:
    return Run.objects.filter(sitemap__in=sitemaps_visible_to(user)).select_related("sitemap")


def placements_visible_to(user: AnyUser) -> QuerySet[Placement]:
    """Images (placements) of the sitemaps the user may see, with their picture and advertiser loaded."""
    return Placement.objects.filter(listing__sitemap__in=sitemaps_visible_to(user)).select_related(
        "asset", "listing__sitemap__advertiser"
    )
