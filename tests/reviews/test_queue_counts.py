"""The review queue's progress line that a decision or an undo sends back (out of band) is the one a fresh page
shows: the same selector, the same filters."""

import re

import pytest
from django.urls import reverse

from tests.factories import AdvertiserFactory, ImageAssetFactory, ListingFactory, PlacementFactory, SitemapFactory
from tests.reviews.test_health import active_model, classify

pytestmark = pytest.mark.django_db

PROGRESS = re.compile(r'<div id="queue-progress".*?</div>', re.S)


def hesitant(advertiser, version, n):
    placements = []
    for i in range(n):
        asset = ImageAssetFactory()
        listing = ListingFactory(sitemap=SitemapFactory(advertiser=advertiser))
        placements.append(PlacementFactory(listing=listing, status="ok", asset=asset))
        classify(asset, version, "image_type", "Dealer", confidence=0.5, margin=0.01 * (i + 1))
    return placements


def progress(html):
    """The progress line's text, whichever way it came (the out-of-band copy says so in one attribute)."""
    return re.sub(r"\s+", " ", PROGRESS.search(html).group(0).replace(' hx-swap-oob="true"', ""))


@pytest.mark.parametrize("filters", [{"reason": "hesitated"}, {"task": "image_type", "advertiser": "ours"}])
def test_after_each_decision_and_an_undo_the_progress_line_equals_a_fresh_pages(admin_client, filters):
    version = active_model("image_type")
    ours = AdvertiserFactory()
    placements = hesitant(ours, version, 5)
    hesitant(AdvertiserFactory(), version, 3)
    params = {key: str(ours.pk) if value == "ours" else value for key, value in filters.items()}
    page = reverse("reviews:staff-queue")

    answers = []
    for placement, label in zip(placements[:3], ["Dealer", "Stock", "Placeholder"], strict=True):
        decided = admin_client.post(
            reverse("reviews:staff-queue-decide"),
            {**params, "placement": placement.pk, "task": "image_type", "label": label},
            HTTP_HX_REQUEST="true",
        )
        answers.append(progress(decided.content.decode()))
        assert answers[-1] == progress(admin_client.get(page, params).content.decode())
    undone = admin_client.post(reverse("reviews:staff-queue-undo"), params, HTTP_HX_REQUEST="true")
    answers.append(progress(undone.content.decode()))
    assert answers[-1] == progress(admin_client.get(page, params).content.decode())

    remaining = [int(re.search(r'queue-remaining">(\d+)', line).group(1)) for line in answers]
    decided = [int(re.search(r'queue-decided">(\d+)', line).group(1)) for line in answers]
    total = 5 if params.get("advertiser") else 8
    assert (remaining, decided) == ([total - 1, total - 2, total - 3, total - 2], [1, 2, 3, 2])
