"""Tagging a near-duplicate cluster with one decision: one fix per image of the cluster, in one advertiser's scope."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from catalog.models import Sitemap
from reviews.crosscheck import cluster_members
from reviews.models import ManualFix
from reviews.selectors import user_can_fix

from .fixes import Change, FixError, manual_fixes_apply


@transaction.atomic
def cluster_fix_apply(
    *, sitemap: Sitemap, cluster_id: int, task: str, label: str, user: User | None, source: str
) -> list[ManualFix]:
    """Sets the task's label on every image of the near-duplicate cluster that the sitemap's advertiser shows
    (its live placements, in any of its sitemaps), as that advertiser's fixes: another advertiser sharing the
    cluster is never touched. The members are found here from (advertiser, cluster), never taken from the client.

    Images already carrying the label record nothing; FixError when the user may not fix the advertiser's tags,
    when the advertiser shows no image of the cluster, or for a label the task does not have.
    """
    if user is not None and not user_can_fix(user, sitemap.advertiser_id):
        raise FixError("you cannot change this advertiser's tags")
    members = cluster_members(advertiser_id=sitemap.advertiser_id, cluster_id=cluster_id)
    if not members:
        raise FixError(f"{sitemap.advertiser} shows no image of cluster {cluster_id}")
    created = manual_fixes_apply(
        changes=[Change(placement, task, label) for placement in members],
        user=user,
        source=source,
        note=f"cluster {cluster_id} tagged as one",
    )
    return list(created)  # bulk_create hands back what it was given (a dict view when nothing changed)
