"""The confirmation step of a bulk retag of everything a grid filter matches.

Before such a retag writes, the reviewer sees how many images it will change and a sample of them, and confirms. The
confirmation carries a token that the server signs, bound to the sitemap, the user, the filter, the label and the
count it showed: when the filter or the number of images it matches differs at write time (a changed form, another
reviewer's fixes meanwhile), the step is shown again instead of writing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from django.contrib.auth.models import User
from django.core import signing
from django.db.models import QuerySet
from django.utils.functional import cached_property

from catalog.models import Placement, Sitemap

from .grid import GridFilters, sitemap_placements, tag_condition

SALT = "reviews.bulk-confirm"
MAX_AGE = 60 * 60  # seconds a confirmation stays valid
SAMPLE = 12


def filter_pairs(filters: GridFilters) -> list[tuple[str, str]]:
    """The filter as sorted (name, value) pairs, the tag conditions included: one canonical form to sign and
    compare."""
    return sorted(filters.as_pairs())


@dataclass
class BulkRequest:
    """One label for every image of a sitemap that a filter matches."""

    sitemap: Sitemap
    user: User
    filters: GridFilters
    task: str
    label: str
    matching: QuerySet[Placement] | None = None

    @cached_property
    def count(self) -> int:
        assert self.matching is not None  # noqa: S101 - check() sets it first
        return self.matching.count()

    @cached_property
    def already(self) -> int:
        """How many of the matching images have the label in effect already: the retag records a confirmation for
        each (a human looked and agreed), not a change."""
        condition = tag_condition(f"{self.task}:{self.label}")
        if not condition:
            return 0
        filters = replace(self.filters, tags=(*self.filters.tags, condition))
        return sitemap_placements(sitemap=self.sitemap, filters=filters).count()

    @property
    def changing(self) -> int:
        """How many of the matching images the retag changes (the others it confirms)."""
        return self.count - self.already

    def describe(self) -> str:
        """The filter in words for the confirmation and the change set ("task=color, label=green")."""
        return ", ".join(f"{name}={value}" for name, value in filter_pairs(self.filters)) or "none"

    def _payload(self) -> dict[str, Any]:
        payload = {
            "sitemap": self.sitemap.pk,
            "user": self.user.pk,
            "filter": [list(pair) for pair in filter_pairs(self.filters)],
            "task": self.task,
            "label": self.label.strip().lower(),
            "count": self.count,
        }
        if self.filters.similar_to:
            # "The images most like X" can change with the same count (more images indexed): bind the very images.
            assert self.matching is not None  # noqa: S101 - check() sets it first
            ids = sorted(self.matching.values_list("pk", flat=True))
            payload["images"] = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:32]
        return payload

    def token(self) -> str:
        return signing.dumps(self._payload(), salt=SALT, compress=True)

    def check(self, token: str, matching: QuerySet[Placement]) -> str | None:
        """None when the token confirms exactly this retag now; else why the confirmation step is (again) needed."""
        self.matching = matching
        if not token:
            return ""
        try:
            confirmed = signing.loads(token, salt=SALT, max_age=MAX_AGE)
        except signing.SignatureExpired:
            return "The confirmation expired: look again."
        except signing.BadSignature:
            return "The confirmation is not valid: look again."
        payload = self._payload()
        varying = ("count", "images")
        if {k: v for k, v in confirmed.items() if k not in varying} != {
            k: v for k, v in payload.items() if k not in varying
        }:
            return "The filter or the label changed since the confirmation: look again."
        if confirmed["count"] != payload["count"]:
            return (
                f"The filter now matches {payload['count']} images, not the {confirmed['count']} you confirmed:"
                " look again."
            )
        if confirmed.get("images") != payload.get("images"):
            return "The images most like this one changed since the confirmation (more were indexed): look again."
        return None
