"""What a candidate would flip per advertiser (by the one effective-tag rule), and accuracy over time."""

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from catalog.models import Placement
from classifier.services.inference import active_models, classify_assets, forget_sessions
from classifier.services.promotion import model_promote
from classifier.services.registry import model_register
from classifier.services.shadow import shadow_run, shadow_start
from reviews.comparison import accuracy_over_time, candidate_flips
from reviews.models import ManualFix
from tests.classifier.onnx_builders import classifier_contract, mean_classifier
from tests.classifier.test_shadow_promotion import ACTIVE_LABELS, CANDIDATE_LABELS, stored_asset
from tests.factories import AdvertiserFactory, ListingFactory, PlacementFactory, SitemapFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_sessions():
    forget_sessions()
    yield
    forget_sessions()


@pytest.fixture
def models():
    active = model_register(
        data=mean_classifier(size=(8, 8)),
        contract=classifier_contract(name="active", color_labels=ACTIVE_LABELS),
        activate=True,
    )
    candidate = model_register(
        data=mean_classifier(size=(16, 16)),
        contract=classifier_contract(name="candidate", size=(16, 16), color_labels=CANDIDATE_LABELS),
    )
    return active, candidate


def place(advertiser, asset, *, attributes=None, **kwargs):
    listing = ListingFactory(sitemap=SitemapFactory(advertiser=advertiser), attributes=attributes or {})
    return PlacementFactory(listing=listing, asset=asset, status=Placement.Status.OK, **kwargs)


def fix(advertiser, asset, new_label, *, old_label="", task="color", source=ManualFix.Source.STAFF, **kwargs):
    return ManualFix.objects.create(
        advertiser=advertiser, asset=asset, task=task, old_label=old_label, new_label=new_label, source=source, **kwargs
    )


def shadow(candidate):
    return shadow_run(pass_id=shadow_start(version=candidate, enqueue=False).pk)


def test_flips_per_advertiser_follow_the_effective_rule(models):
    _, candidate = models
    north, south = AdvertiserFactory(slug="north", name="North"), AdvertiserFactory(slug="south", name="South")
    a = {name: stored_asset(color, width) for name, color, width in [
        ("red", "red", 64), ("fixed_green", "green", 65), ("blue", "blue", 66), ("placeholder", "green", 67),
        ("green1", "green", 72), ("green2", "green", 73), ("green3", "green", 74),
        ("confirmed_green", "green", 68), ("south_red", "red", 69), ("scraped_blue", "blue", 70),
        ("gone_blue", "blue", 71),
    ]}  # fmt: skip
    p = {name: place(north, a[name]) for name in ("red", "fixed_green", "blue", "placeholder", "green1", "green2")}
    p["green3"] = place(north, a["green3"])
    p["south_blue"] = place(south, a["blue"])  # the same picture at both advertisers
    for name in ("confirmed_green", "south_red"):
        p[name] = place(south, a[name])
    p["scraped_blue"] = place(south, a["scraped_blue"], attributes={"color": "blue"})
    place(north, a["gone_blue"], is_gone=True)
    classify_assets(list(a.values()), active_models())
    shadow(candidate)
    fix(north, a["fixed_green"], "Blue", old_label="Green")  # the candidate agrees with staff
    fix(north, a["red"], "Red", old_label="Red", source=ManualFix.Source.ADVERTISER)  # a confirmation it agrees with
    fix(north, a["placeholder"], "Placeholder", task="image_type")  # no color: the rule, never a flip
    fix(south, a["confirmed_green"], "Green", old_label="Green")  # the candidate says Blue: it disagrees

    result = candidate_flips(version=candidate, task="color", samples=2)

    assert [item.advertiser.slug for item in result] == ["north", "south"]  # most flips first
    north_flips, south_flips = result
    assert north_flips.images == 7
    assert north_flips.flips == {("Green", "Blue"): 3, ("Blue", "Green"): 1}
    assert north_flips.flipped == 4
    assert len(north_flips.samples) == 2
    assert {s.pk for s in north_flips.samples} <= {p[n].pk for n in ("blue", "green1", "green2", "green3")}
    sample = north_flips.samples[0]
    assert (sample.flip_from, sample.flip_to) in {("Green", "Blue"), ("Blue", "Green")}
    assert sample.asset.thumbnail.name
    assert (north_flips.fixes_agree, north_flips.fixes_disagree) == (2, 0)

    # The shared blue picture flips; the fixed, scraped and red ones do not.
    assert (south_flips.images, south_flips.flips) == (4, {("Blue", "Green"): 1})
    assert [s.pk for s in south_flips.samples] == [p["south_blue"].pk]
    assert (south_flips.fixes_agree, south_flips.fixes_disagree) == (0, 1)


@pytest.mark.parametrize("advertisers", [2, 6])
def test_flips_cost_a_constant_number_of_queries(models, advertisers, django_assert_max_num_queries):
    _, candidate = models
    assets = []
    for i in range(advertisers):
        advertiser = AdvertiserFactory()
        for j, color in enumerate(("green", "blue", "red")):
            asset = stored_asset(color, 64 + 3 * i + j)
            place(advertiser, asset)
            assets.append(asset)
        fix(advertiser, assets[-1], "Red", old_label="Red")
    classify_assets(assets, active_models())
    shadow(candidate)

    with django_assert_max_num_queries(6):
        result = candidate_flips(version=candidate, task="color")
        samples = [(s.asset.thumbnail.name, s.listing.sitemap.advertiser_id) for item in result for s in item.samples]

    assert len(result) == advertisers
    assert len(samples) == 2 * advertisers
    assert all(item.flips == {("Green", "Blue"): 1, ("Blue", "Green"): 1} for item in result)
    assert all((item.fixes_agree, item.fixes_disagree) == (1, 0) for item in result)


def at(when, monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: when)


def test_accuracy_over_time_per_week_and_advertiser_with_promotions(models, monkeypatch, django_assert_max_num_queries):
    _, candidate = models
    north, south = AdvertiserFactory(slug="north", name="North"), AdvertiserFactory(slug="south", name="South")
    asset = stored_asset("green", 64)
    other = stored_asset("red", 65)

    at(datetime(2024, 1, 10, 9, tzinfo=UTC), monkeypatch)
    fix(north, asset, "Blue", old_label="Green")  # before the window
    at(datetime(2024, 2, 20, 9, tzinfo=UTC), monkeypatch)
    origin = fix(north, asset, "Blue", old_label="Green")  # overturned
    fix(north, other, "Red", old_label="Red")  # confirmed
    fix(south, asset, "Red", old_label="Green", source=ManualFix.Source.ADVERTISER)  # overturned
    fix(south, other, "Blue", old_label="")  # no model tag before it: not counted
    fix(south, other, "Blue", old_label="Red", source=ManualFix.Source.CARRIED, origin=origin)  # not a human look
    fix(south, other, "Stock", old_label="Dealer", task="image_type")  # another task
    at(datetime(2024, 3, 5, 15, tzinfo=UTC), monkeypatch)
    model_promote(version=candidate, force=True)
    at(datetime(2024, 3, 12, 9, tzinfo=UTC), monkeypatch)
    fix(north, other, "Green", old_label="Red")  # overturned
    fix(south, asset, "Red", old_label="Red")  # confirmed
    fix(south, other, "Red", old_label="Red")  # confirmed
    monkeypatch.undo()

    with django_assert_max_num_queries(2):
        chart = accuracy_over_time(task="color", weeks=4, now=datetime(2024, 3, 14, 12, tzinfo=UTC))

    assert chart["weeks"] == ["2024-02-19", "2024-02-26", "2024-03-04", "2024-03-11"]
    assert chart["overall"] == [
        {"week": "2024-02-19", "reviewed": 3, "overturned": 2, "share": 0.6667},
        {"week": "2024-02-26", "reviewed": 0, "overturned": 0, "share": None},
        {"week": "2024-03-04", "reviewed": 0, "overturned": 0, "share": None},
        {"week": "2024-03-11", "reviewed": 3, "overturned": 1, "share": 0.3333},
    ]
    by_slug = {item["slug"]: item for item in chart["advertisers"]}
    assert (by_slug["north"]["reviewed"], by_slug["north"]["overturned"], by_slug["north"]["share"]) == (3, 2, 0.6667)
    assert [point["share"] for point in by_slug["north"]["series"]] == [0.5, None, None, 1.0]
    assert [point["share"] for point in by_slug["south"]["series"]] == [1.0, None, None, 0.0]
    assert [(m["week"], m["task"], m["to_version"], m["kind"]) for m in chart["promotions"]] == [
        ("2024-03-04", "color", "candidate", "promote"),
    ]
    assert chart["promotions"][0]["date"].startswith("2024-03-05T15:00")


def test_accuracy_over_time_leaves_out_a_fix_that_was_withdrawn(models, monkeypatch):
    """An undone mistake is no judgement on the model's tag: neither the mistake nor its withdrawal is counted."""
    north = AdvertiserFactory(slug="north", name="North")
    asset, other = stored_asset("green", 64), stored_asset("red", 65)
    at(datetime(2024, 3, 12, 9, tzinfo=UTC), monkeypatch)
    mistake = fix(north, asset, "Blue", old_label="Green")
    fix(north, asset, "", old_label="Blue", withdraws=True, reverts=mistake)
    fix(north, other, "Red", old_label="Red")  # confirmed, and kept
    monkeypatch.undo()

    chart = accuracy_over_time(task="color", weeks=1, now=datetime(2024, 3, 14, 12, tzinfo=UTC))

    assert chart["overall"] == [{"week": "2024-03-11", "reviewed": 1, "overturned": 0, "share": 0.0}]
