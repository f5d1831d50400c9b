"""Review by cluster offers the cluster's label in effect first (its most common effective label for the task),
not the vocabulary's first label: a cluster of placeholders opens on Placeholder."""

import re

import pytest
from django.urls import reverse

from reviews.templatetags.reviews_tags import label_in_effect
from tests.factories import ImageAssetFactory, ListingFactory, SitemapFactory, UserFactory
from tests.reviews.test_cluster_fix import cluster
from tests.reviews.test_crosscheck import active_model, photo

pytestmark = pytest.mark.django_db


def chosen(html):
    """The label each cluster row's picker has selected, in the page's order."""
    pickers = re.findall(r'<select name="label".*?</select>', html, re.S)
    return [(re.findall(r"<option[^>]*selected[^>]*>([^<]*)</option>", picker) or ["(none)"])[0] for picker in pickers]


def clustered(sitemap, model, kinds, color=None):
    copies = [ImageAssetFactory() for _ in kinds]
    cluster(*copies)
    for asset, kind in zip(copies, kinds, strict=True):
        photo(ListingFactory(sitemap=sitemap), model, color, kind=kind, asset=asset)
    return copies[0].pk


def test_the_picker_opens_on_the_clusters_most_common_label_in_effect(client):
    model = active_model("image_type", "color")
    sitemap = SitemapFactory()
    placeholders = clustered(sitemap, model, ["Placeholder"] * 4)
    mostly_stock = clustered(sitemap, model, ["Stock", "Stock", "Dealer"], color="red")
    client.force_login(UserFactory(is_staff=True))
    url = reverse("reviews:staff-clusters", args=[sitemap.pk])

    page = client.get(url, {"task": "image_type"})
    assert [row.picture for row in page.context["page"].rows] == [placeholders, mostly_stock]
    assert chosen(page.content.decode()) == ["Placeholder", "Stock"]
    # Color: the model's "red" in the vocabulary's spelling; a placeholder has no color, so nothing is offered first.
    assert chosen(client.get(url, {"task": "color"}).content.decode()) == ["label…", "Red"]

    tagged = client.post(
        reverse("reviews:staff-cluster-fix", args=[sitemap.pk]),
        {"cluster": mostly_stock, "task": "image_type", "label": "Dealer"},
        HTTP_HX_REQUEST="true",
    )
    assert chosen(tagged.content.decode()) == ["Dealer"]  # the row comes back with its new label in effect


def test_label_in_effect_counts_spellings_together_and_ignores_no_label():
    labels = ("Black", "Blue", "Red")
    assert label_in_effect([("—", 5), ("Blue", 3), ("red", 2), ("Red", 2)], labels) == "Red"
    assert label_in_effect([("Blue", 2), ("Red", 2)], labels) == "Blue"  # a tie: the first listed
    assert label_in_effect([("—", 5)], labels) == ""
