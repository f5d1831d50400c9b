"""More like this (reviews.similar): a dealer's photo-booth series found by the cached features of the real vehicle
model's image_type head, shown on the grid through `similar_to` and retagged in one confirmed bulk action; never
another sitemap's or advertiser's images, and bad input is a clear 400/404."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from PIL import ImageOps
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Placement
from classifier.models import FeatureVector
from classifier.synth import vehicle_sample
from reviews import similar
from reviews.effective_store import effective_tags_refresh
from reviews.models import ManualFix
from reviews.similar import SimilarNotFound, similar_images, similar_in_sitemap, similarity_head
from tests.classifier.test_features import register_starter, store
from tests.factories import MembershipFactory, UserFactory
from tests.reviews.test_screens import make_sitemap

pytestmark = pytest.mark.django_db

DIM = 512  # the vehicle model's embedding


@pytest.fixture
def model():
    similar.forget_indexes()
    yield register_starter("vehicle")
    similar.forget_indexes()


def cache_features(placement, vector):
    """A cached feature vector of the placement's picture under the active image_type version, as
    classifier.services.features stores it (float32 little-endian, the head's feature tensor)."""
    head = similarity_head()
    tensor = similar._feature_tensor(head.model_version, head)
    FeatureVector.objects.filter(asset=placement.asset, model_version=head.model_version).delete()
    FeatureVector.objects.create(  # vectors are inserted, never updated (asset_features)
        asset=placement.asset,
        model_version=head.model_version,
        tensor=tensor,
        data=np.asarray(vector, dtype="<f4").tobytes(),
    )


def booth_world(sitemap_size=12, booth=5):
    """A sitemap whose first `booth` images are one booth series, each further from the first (graded noise), and
    whose others are unrelated; returns the sitemap, its placements and the booth's ids in the right order."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal(DIM)
    sitemap, placements = make_sitemap(sitemap_size)
    for i, placement in enumerate(placements):
        vector = base + 0.15 * i * rng.standard_normal(DIM) if i < booth else rng.standard_normal(DIM)
        cache_features(placement, vector)
    return sitemap, placements, [p.pk for p in placements[:booth]], base


def test_the_booth_series_is_ranked_first_and_in_order(model):
    _sitemap, placements, booth, _ = booth_world()

    found = similar_images(placement=placements[0], limit=5)

    assert found.placement_ids == booth
    assert found.matches[0][1] == pytest.approx(1.0)
    assert [score for _, score in found.matches] == sorted((s for _, s in found.matches), reverse=True)
    assert (found.indexed, found.total) == (12, 12)
    # From the middle of the series, its neighbours come before its far ends and before anything unrelated.
    middle = similar_images(placement=placements[2], limit=5).placement_ids
    assert middle[0] == booth[2]
    assert set(middle) == set(booth)


def test_images_without_features_are_not_candidates_and_are_counted(model):
    _sitemap, placements = make_sitemap(4)
    for placement in placements[:3]:
        cache_features(placement, np.ones(DIM))

    found = similar_images(placement=placements[0], limit=10)

    assert set(found.placement_ids) == {p.pk for p in placements[:3]}
    assert (found.indexed, found.total) == (3, 4)


def test_the_cached_matrix_follows_new_features(model):
    _sitemap, placements, booth, base = booth_world()
    assert similar_images(placement=placements[0], limit=5).placement_ids == booth

    cache_features(placements[-1], base)  # a new vector, identical to the first image's: now second

    assert similar_images(placement=placements[0], limit=2).placement_ids[1] == placements[-1].pk


def test_the_advertiser_scope_reaches_its_other_sitemaps_and_no_other_advertiser(model):
    sitemap, placements, _booth, base = booth_world()
    _sibling, sibling_placements = make_sitemap(2, advertiser=sitemap.advertiser)
    _stranger, stranger_placements = make_sitemap(2)
    for placement in [*sibling_placements, *stranger_placements]:
        cache_features(placement, base)

    in_sitemap = similar_images(placement=placements[0], scope="sitemap", limit=50).placement_ids
    in_advertiser = similar_images(placement=placements[0], scope="advertiser", limit=50).placement_ids

    assert set(in_sitemap) == {p.pk for p in placements}
    assert set(in_advertiser) == {p.pk for p in [*placements, *sibling_placements]}
    assert in_advertiser[:3] == [placements[0].pk, *sorted(p.pk for p in sibling_placements)]


def test_the_grid_shows_the_series_and_one_confirmed_bulk_retag_tags_exactly_it(admin_client, model):
    sitemap, placements, booth, _ = booth_world()
    grid = reverse("reviews:staff-grid", args=[sitemap.pk])
    params = {"task": "image_type", "similar_to": booth[0], "similar_count": 5}

    page = admin_client.get(grid, params)
    assert page.status_code == 200
    assert {item.placement.pk for item in page.context["page"].items} == set(booth)
    assert "(12 of 12 images indexed)" in page.content.decode()

    url = reverse("reviews:staff-fixes", args=[sitemap.pk])
    bulk = {**params, "bulk_label": "Dealer", "bulk_task": "image_type", "select_all": "filter"}
    step = admin_client.post(url, bulk)
    assert step.context["bulk"].count == 5
    assert not ManualFix.objects.exists()

    admin_client.post(url, {**bulk, "bulk_token": step.context["token"]})

    fixes = ManualFix.objects.filter(task="image_type", new_label="Dealer")
    assert sorted(fixes.values_list("asset_id", flat=True)) == sorted(p.asset_id for p in placements[:5])
    assert ManualFix.objects.count() == 5


def test_a_confirmation_does_not_cover_other_images_with_the_same_count(admin_client, model):
    sitemap, placements, booth, base = booth_world()
    url = reverse("reviews:staff-fixes", args=[sitemap.pk])
    bulk = {
        "task": "image_type", "similar_to": booth[0], "similar_count": 5,
        "bulk_label": "Dealer", "bulk_task": "image_type", "select_all": "filter",
    }  # fmt: skip
    step = admin_client.post(url, bulk)

    cache_features(placements[-1], base)  # now among the 5 most similar: the same count, other images

    again = admin_client.post(url, {**bulk, "bulk_token": step.context["token"]})
    assert "The images most like this one changed" in again.content.decode()
    assert not ManualFix.objects.exists()


def test_the_image_page_links_to_more_like_this(admin_client, model):
    sitemap, placements, _, _ = booth_world(sitemap_size=2, booth=2)

    page = admin_client.get(reverse("reviews:staff-image", args=[placements[0].pk])).content.decode()

    grid = reverse("reviews:staff-grid", args=[sitemap.pk])
    assert f'href="{grid}?task=image_type&amp;similar_to={placements[0].pk}">More like this' in page


def test_each_grid_card_links_to_more_like_it(admin_client, model):
    sitemap, placements, _, _ = booth_world(sitemap_size=2, booth=2)
    grid = reverse("reviews:staff-grid", args=[sitemap.pk])

    page = admin_client.get(grid, {"task": "image_type"}).content.decode()

    for placement in placements:
        assert f'href="{grid}?task=image_type&amp;similar_to={placement.pk}"' in page


@pytest.fixture
def portal(client, model):
    """An editor of the first sitemap's advertiser, and another advertiser with the same booth photos."""
    mine, placements, _booth, base = booth_world()
    theirs, their_placements = make_sitemap(3)
    for placement in their_placements:
        cache_features(placement, base)
    user = UserFactory()
    MembershipFactory(user=user, advertiser=mine.advertiser)
    client.force_login(user)
    return client, mine, placements, theirs, their_placements


def test_the_portal_finds_its_own_series_and_never_another_advertisers_images(portal):
    client, mine, placements, theirs, their_placements = portal
    grid = reverse("reviews:portal-grid", args=[mine.pk])

    page = client.get(grid, {"task": "image_type", "similar_to": placements[0].pk, "similar_count": 50})
    shown = {item.placement.pk for item in page.context["page"].items}
    assert shown == {p.pk for p in placements}
    assert not shown & {p.pk for p in their_placements}

    assert client.get(grid, {"similar_to": their_placements[0].pk}).status_code == 404
    their_grid = reverse("reviews:portal-grid", args=[theirs.pk])
    assert client.get(their_grid, {"similar_to": their_placements[0].pk}).status_code == 404
    # A bulk retag through another advertiser's image is refused before anything is written.
    fixes = reverse("reviews:portal-fixes", args=[mine.pk])
    refused = client.post(
        fixes,
        {
            "similar_to": their_placements[0].pk,
            "bulk_label": "Dealer",
            "bulk_task": "image_type",
            "select_all": "filter",
        },
    )
    assert refused.status_code == 404
    assert not ManualFix.objects.exists()


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"similar_to": "abc"}, 400, "similar_to must be up to 50 image ids"),
        ({"similar_to": "-3"}, 400, "similar_to must be up to 50 image ids"),
        ({"similar_to": "1e3"}, 400, "similar_to must be up to 50 image ids"),
        ({"similar_to": "99999999999999999999"}, 400, "similar_to must be up to 50 image ids"),
        ({"similar_to": "99999999"}, 404, "is not an image of this sitemap"),
        ({"similar_to": "{first}", "similar_count": "0"}, 400, "similar_count must be a whole number"),
        ({"similar_to": "{first}", "similar_count": "x"}, 400, "similar_count must be a whole number"),
    ],
)
def test_bad_input_is_a_clear_refusal(admin_client, model, params, status, message):
    sitemap, placements, _, _ = booth_world(sitemap_size=2, booth=2)
    params = {k: v.format(first=placements[0].pk) for k, v in params.items()}

    page = admin_client.get(reverse("reviews:staff-grid", args=[sitemap.pk]), params)

    assert page.status_code == status
    assert message in page.content.decode()


def test_a_gone_image_has_no_similar_images(model):
    sitemap, placements, _, _ = booth_world(sitemap_size=2, booth=2)
    Placement.objects.filter(pk=placements[0].pk).update(is_gone=True)
    effective_tags_refresh(sitemap_id=sitemap.pk)

    with pytest.raises(SimilarNotFound, match="not a live image"):
        similar_images(placement=placements[0])


def test_compute_features_indexes_a_sitemap_from_its_real_originals(model):
    """The real model on stored JPEGs: the same photo cropped a little (the booth's next shot) is found before
    other cars."""
    photo = vehicle_sample(1, size=(320, 240)).image
    pictures = [
        photo,
        ImageOps.crop(photo, 6).resize((320, 240)),
        *(vehicle_sample(s, size=(320, 240)).image for s in (2, 3)),
    ]
    sitemap, placements = make_sitemap(4)
    for placement, picture in zip(placements, pictures, strict=True):
        placement.asset = store(picture)
        placement.save(update_fields=["asset"])
    effective_tags_refresh(sitemap_id=sitemap.pk)
    out = io.StringIO()

    call_command("compute_features", sitemap=[sitemap.pk], stdout=out)

    assert "4 images have vehicle's features" in out.getvalue()
    assert FeatureVector.objects.count() == 4
    found = similar_images(placement=placements[0], limit=4)
    assert (found.indexed, found.total) == (4, 4)
    assert found.placement_ids[:2] == [placements[0].pk, placements[1].pk]
    call_command("compute_features", sitemap=[sitemap.pk], stdout=out)  # cached: nothing computed again
    assert FeatureVector.objects.count() == 4


def test_compute_features_without_a_scope_is_one_line(model):
    with pytest.raises(CommandError, match="name a scope: --sitemap ID or --advertiser ID"):
        call_command("compute_features")


def test_the_benchmark_prints_its_figures():
    out = io.StringIO()
    call_command("benchmark_similar", images=2000, queries=2, stdout=out)
    assert "2,000 images x 512 float32" in out.getvalue()
    assert "load average" in out.getvalue()


def test_more_like_a_selection_finds_the_series_of_each_selected_image(admin_client, model):
    rng = np.random.default_rng(11)
    first, second = rng.standard_normal(DIM), rng.standard_normal(DIM)
    sitemap, placements = make_sitemap(12)
    for i, placement in enumerate(placements):
        base = first if i < 4 else second if i < 8 else rng.standard_normal(DIM)
        cache_features(placement, base + 0.1 * rng.standard_normal(DIM) if i < 8 else base)
    series = {p.pk for p in placements[:8]}

    found = similar_in_sitemap(sitemap=sitemap, placement_ids=[placements[0].pk, placements[4].pk], limit=8)
    assert set(found.placement_ids) == series
    assert found.placement_ids[:2] == [placements[0].pk, placements[4].pk]  # the images asked about first
    assert found.asked == (placements[0].pk, placements[4].pk)
    # One image alone finds its own series first.
    assert set(similar_in_sitemap(sitemap=sitemap, placement_ids=[placements[0].pk], limit=4).placement_ids) == {
        p.pk for p in placements[:4]
    }

    grid = reverse("reviews:staff-grid", args=[sitemap.pk])
    query = {"task": "image_type", "similar_to": f"{placements[0].pk},{placements[4].pk}", "similar_count": 8}
    page = admin_client.get(grid, query).content.decode()
    assert set(map(int, re.findall(r'data-id="(\d+)"', page))) == series
    assert "and 1 more selected" in page
    assert f'value="{placements[0].pk},{placements[4].pk}"' in page  # kept for the next page and the bulk step
    too_many = ",".join(str(p.pk) for p in placements) + "," + ",".join(str(n) for n in range(1, 40))
    for value, status in (("1,,2", 400), (too_many, 400), (f"{placements[0].pk},{2**40}", 404)):
        assert admin_client.get(grid, {"task": "image_type", "similar_to": value}).status_code == status


def test_the_api_pages_the_images_like_a_selection_as_the_grid_shows_them(model):
    sitemap, _placements, booth, _ = booth_world()
    user = UserFactory()
    MembershipFactory(user=user, advertiser=sitemap.advertiser)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    url = f"/api/sitemaps/{sitemap.pk}/images/"

    answer = api.get(url, {"task": "image_type", "similar_to": f"{booth[0]},{booth[1]}", "similar_count": 5})
    assert answer.status_code == 200, answer.content
    assert {item["id"] for item in answer.json()["results"]} == set(booth)
    for query, status, text in (
        ({"similar_to": "1;2"}, 400, "similar_to must be up to 50 image ids"),
        ({"similar_to": str(booth[0]), "similar_count": 0}, 400, "greater than or equal to 1"),
        ({"similar_to": str(2**40)}, 404, "is not an image of this sitemap"),
    ):
        answer = api.get(url, query)
        assert answer.status_code == status, answer.content
        assert text in answer.content.decode()
