"""Run health flags, every advertiser's health and the review queue, on small datasets built by hand."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from itertools import count

import pytest
from django.utils import timezone

from catalog.models import Placement, Run
from catalog.services.runs import run_finish
from classifier.models import Classification, ModelHead, ModelVersion
from classifier.services.pipeline import run_classified_finish
from reviews import health
from reviews.health import flags
from reviews.health.flags import RunFigures
from reviews.models import ManualFix
from tests.factories import (
    AdvertiserFactory,
    ImageAssetFactory,
    ListingFactory,
    PlacementFactory,
    RunFactory,
    SitemapFactory,
    UserFactory,
)

_serial = count()


def active_model(*tasks, status=ModelVersion.Status.ACTIVE, active=True):
    """A classifier version with one head per task (active heads unless said otherwise): rows only, no ONNX."""
    n = next(_serial)
    version = ModelVersion.objects.create(
        name=f"model {n}",
        kind=ModelVersion.Kind.CLASSIFIER,
        file=f"models/{n}.onnx",
        sha256=hashlib.sha256(f"model {n}".encode()).hexdigest(),
        contract={},
        status=status,
    )
    for task in tasks:
        ModelHead.objects.create(model_version=version, task=task, output=task, labels=[], is_active=active)
    return version


def classify(asset, version, task, label="", *, confidence=0.9, margin=0.8, failed="", at=None):
    result = Classification.objects.create(
        asset=asset,
        model_version=version,
        task=task,
        status=Classification.Status.FAILED if failed else Classification.Status.OK,
        label="" if failed else label,
        confidence=None if failed else confidence,
        margin=None if failed else margin,
        error=failed,
    )
    if at is not None:
        Classification.objects.filter(pk=result.pk).update(updated_at=at)
    return result


def image(sitemap, asset=None, **kwargs):
    """A live placement of a new listing of the sitemap, showing the asset (a new one by default)."""
    kwargs.setdefault("status", Placement.Status.OK)
    asset = asset or (ImageAssetFactory() if kwargs["status"] == Placement.Status.OK else None)
    listing = kwargs.pop("listing", None) or ListingFactory(sitemap=sitemap, attributes=kwargs.pop("attributes", {}))
    return PlacementFactory(listing=listing, asset=asset, **kwargs)


def fix(advertiser, asset, task, label, source=ManualFix.Source.STAFF, **kwargs):
    return ManualFix.objects.create(
        advertiser=advertiser, asset=asset, task=task, new_label=label, source=source, **kwargs
    )


def finished_run(sitemap, *, urls=100, not_modified=0, cache_hits=0, downloaded=0, failed=0, **kwargs):
    kwargs.setdefault("status", Run.Status.PARTIAL if failed else Run.Status.SUCCEEDED)
    return RunFactory(
        sitemap=sitemap,
        step=Run.Step.DONE,
        finished_at=timezone.now(),
        urls=urls,
        not_modified=not_modified,
        cache_hits=cache_hits,
        downloaded=downloaded,
        failed=failed,
        **kwargs,
    )


def codes(flag_list):
    return [flag["code"] for flag in flag_list]


# The flags, figures only -------------------------------------------------------------------------------------


def test_failures_jump_needs_twice_the_average_and_five_points():
    previous = [RunFigures(urls=100, failed=2), RunFigures(urls=100, failed=4)]  # 3% on average
    assert flags.failures_jump(RunFigures(urls=100, failed=8), previous)["message"] == (
        "8% of the images failed (8 of 100), against 3% on average over the previous 2 Runs"
    )
    assert flags.failures_jump(RunFigures(urls=100, failed=7), previous) is None  # 4 points above: noise
    calm = [RunFigures(urls=100, failed=20)]
    assert flags.failures_jump(RunFigures(urls=100, failed=40), calm) is None  # twice, not more than twice
    assert flags.failures_jump(RunFigures(urls=100, failed=41), calm)["previous_rate"] == 0.2
    assert flags.failures_jump(RunFigures(urls=100, failed=90), []) is None  # nothing to compare with


def test_cdn_changed_when_not_modified_turns_into_fetches_or_downloads_jump():
    quiet = [RunFigures(urls=100, not_modified=95, downloaded=5)]
    renamed = flags.cdn_changed(RunFigures(urls=100, cache_hits=70, downloaded=10, not_modified=20), quiet)
    assert renamed["fetched"] == 0.8
    assert "80% of the URLs were fetched again" in renamed["message"]
    assert flags.cdn_changed(RunFigures(urls=100, not_modified=90, downloaded=10), quiet) is None

    busy = [RunFigures(urls=100, cache_hits=60, downloaded=10, not_modified=30)]  # mostly fetched already
    assert flags.cdn_changed(RunFigures(urls=100, cache_hits=60, downloaded=40), busy) is None  # not > 30 points
    jumped = flags.cdn_changed(RunFigures(urls=100, cache_hits=49, downloaded=41), busy)
    assert jumped["message"].startswith("downloads jumped from 10% to 41% of the URLs")


def test_label_share_jumps_name_the_label_and_both_shares():
    before = [
        RunFigures(label_shares={"image_type": {"Dealer": 0.96, "Placeholder": 0.04}}),
        RunFigures(label_shares={"image_type": {"Dealer": 0.96, "Placeholder": 0.04}}),
        RunFigures(label_shares={}),  # a Run from before the shares were recorded
    ]
    jumped = flags.label_share_jumps(
        RunFigures(label_shares={"image_type": {"Dealer": 0.39, "Placeholder": 0.61}}), before
    )
    assert [flag["message"] for flag in jumped] == [
        "image_type: share of Dealer fell from 96% to 39%",
        "image_type: share of Placeholder jumped from 4% to 61%",
    ]
    assert jumped[1]["previous_runs"] == 2
    calm = RunFigures(label_shares={"image_type": {"Dealer": 0.77, "Placeholder": 0.23}})  # 19 points
    assert flags.label_share_jumps(calm, before) == []
    new_label = RunFigures(label_shares={"image_type": {"Stock": 0.2, "Dealer": 0.8}})
    assert [flag["label"] for flag in flags.label_share_jumps(new_label, before)] == ["Stock"]


# run_health_record ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_calm_run_raises_no_flag_and_records_its_label_shares():
    version = active_model("image_type", "color")
    sitemap = SitemapFactory()
    for label in ("Dealer", "Dealer", "Dealer", "Stock"):
        placement = image(sitemap)
        classify(placement.asset, version, "image_type", label)
        classify(placement.asset, version, "color", "Red")
    image(sitemap, status=Placement.Status.FAILED)  # no label: left out of the shares
    shares = {"image_type": {"Dealer": 0.75, "Stock": 0.25}, "color": {"Red": 1.0}}
    finished_run(sitemap, not_modified=97, downloaded=1, failed=2, label_shares=shares)
    finished_run(sitemap, not_modified=95, downloaded=2, failed=3, label_shares=shares)
    run = finished_run(sitemap, not_modified=94, cache_hits=1, downloaded=1, classified=1, failed=4)

    assert health.run_health_record(run=run) == []
    run.refresh_from_db()
    assert run.health_flags == []
    assert run.label_shares == shares


@pytest.mark.django_db
def test_a_run_with_no_previous_run_is_not_compared():
    sitemap = SitemapFactory()
    # A Run that never finished, or one of another sitemap, is no previous Run either.
    RunFactory(sitemap=sitemap, status=Run.Status.FAILED)
    finished_run(SitemapFactory(), not_modified=100, label_shares={"image_type": {"Dealer": 1.0}})
    run = finished_run(sitemap, cache_hits=50, downloaded=20, failed=30)
    image(sitemap, status=Placement.Status.FAILED)
    assert health.run_health_record(run=run) == []


@pytest.mark.django_db
def test_each_flag_is_raised_with_its_figures_and_recomputed_on_every_call():
    version = active_model("image_type", "color")
    advertiser = AdvertiserFactory()
    sitemap = SitemapFactory(advertiser=advertiser)
    placeholders = [image(sitemap) for _ in range(3)]
    for placement in placeholders:
        classify(placement.asset, version, "image_type", "Placeholder")
        classify(placement.asset, version, "color", "Grey")  # the rule shows none: no flag for a model color
        fix(advertiser, placement.asset, "color", "Red", ManualFix.Source.ADVERTISER)  # a color fix is flagged
    dealer = image(sitemap)
    classify(dealer.asset, version, "image_type", "Dealer")
    fix(advertiser, dealer.asset, "image_type", "Stock", ManualFix.Source.ADVERTISER)
    fix(advertiser, dealer.asset, "image_type", "Dealer", ManualFix.Source.STAFF)
    for _ in range(4):
        finished_run(sitemap, not_modified=96, downloaded=2, failed=2, label_shares={"image_type": {"Dealer": 1.0}})
    run = finished_run(
        sitemap, cache_hits=60, downloaded=20, failed=20, classified=18, failure_reasons={"classification_failed": 2}
    )

    flag_list = health.run_health_record(run=run)

    assert codes(flag_list) == [
        "ml_failed",
        "failures_jump",
        "cdn_changed",
        "label_share_jump",
        "label_share_jump",
        "placeholder_color_fix",
        "disagreements",
    ]
    messages = [flag["message"] for flag in flag_list]
    assert messages[0] == "the model failed on 2 images: they are shown as failed, not tagged"
    assert messages[1] == "20% of the images failed (20 of 100), against 2% on average over the previous 4 Runs"
    assert messages[2].startswith("80% of the URLs were fetched again (cache hits or downloads)")
    assert messages[3:5] == [
        "image_type: share of Dealer fell from 100% to 25%",
        "image_type: share of Placeholder jumped from 0% to 75%",
    ]
    assert flag_list[5]["images"] == 3
    assert flag_list[6]["tags"] == 1
    run.refresh_from_db()
    assert run.health_flags == flag_list
    # A placeholder has no color: the three placeholders are left out of the color shares.
    assert run.label_shares == {"image_type": {"Placeholder": 0.75, "Dealer": 0.25}}

    # Staff settle it; the flags are recomputed, not appended.
    for placement in placeholders:
        fix(advertiser, placement.asset, "image_type", "Dealer")
    fix(advertiser, dealer.asset, "image_type", "Stock", ManualFix.Source.ADVERTISER)
    fix(advertiser, dealer.asset, "image_type", "Stock", ManualFix.Source.STAFF)
    run.failure_reasons = {}
    run.failed = 2
    assert codes(health.run_health_record(run=run)) == ["cdn_changed", "label_share_jump", "label_share_jump"]


@pytest.mark.django_db
def test_ml_failed_when_new_images_came_in_and_none_was_classified():
    sitemap = SitemapFactory(tasks_enabled=["image_type"])
    run = finished_run(sitemap, downloaded=10, not_modified=90)
    assert health.run_health_record(run=run) == []  # no active model: nothing to classify with
    active_model("color")  # a model for a task the sitemap does not tag
    assert health.run_health_record(run=run) == []

    active_model("image_type")
    [flag] = health.run_health_record(run=run)
    assert flag == {
        "code": "ml_failed",
        "message": "10 images downloaded but none classified, although models are active for image_type",
        "downloaded": 10,
        "classified": 0,
    }
    run.classified = 10
    assert health.run_health_record(run=run) == []


@pytest.mark.django_db
def test_a_scrape_color_wins_in_the_shares_and_a_fix_only_counts_for_its_advertiser():
    version = active_model("color")
    ours, theirs = SitemapFactory(), SitemapFactory()
    shared = ImageAssetFactory()  # one CDN, two advertisers
    image(ours, shared)
    image(theirs, shared)
    configured = image(ours, attributes={"color": " gray "})
    classify(shared, version, "color", "Red")
    classify(configured.asset, version, "color", "Red")
    fix(ours.advertiser, shared, "color", "Blue")

    assert health.sitemap_label_shares(sitemap=ours) == {"color": {"Blue": 0.5, "Grey": 0.5}}
    assert health.sitemap_label_shares(sitemap=theirs) == {"color": {"Red": 1.0}}


@pytest.mark.django_db
def test_run_finish_records_the_flags(settings):
    # The flags first: the notifications read them.
    assert settings.RUN_AFTER_FINISH == ["reviews.health.run_health_record", "notifications.services.run_notify"]
    active_model("image_type")
    sitemap = SitemapFactory()
    run = RunFactory(sitemap=sitemap, status=Run.Status.RUNNING, started_at=timezone.now())
    for n in range(3):
        image(sitemap, last_run=run, outcome="downloaded", url=f"https://cdn.example/new/{n}.jpg")

    run_finish(run=run)

    run.refresh_from_db()
    assert (run.status, run.downloaded, codes(run.health_flags)) == (Run.Status.SUCCEEDED, 3, ["ml_failed"])


@pytest.mark.django_db
def test_a_broken_hook_never_fails_a_finished_run(settings):
    settings.RUN_AFTER_FINISH = ["reviews.health.no_such_function"]
    run = RunFactory(status=Run.Status.RUNNING, started_at=timezone.now())
    run_finish(run=run)
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED


@pytest.mark.django_db
def test_a_classified_run_ends_with_its_classification_failures_flagged():
    version = active_model("image_type")
    sitemap = SitemapFactory(tasks_enabled=["image_type"])
    run = RunFactory(
        sitemap=sitemap, status=Run.Status.RUNNING, step=Run.Step.CLASSIFY, started_at=timezone.now(), classified=1
    )
    good, bad = image(sitemap, last_run=run, outcome="downloaded"), image(sitemap, last_run=run, outcome="downloaded")
    classify(good.asset, version, "image_type", "Dealer")
    classify(bad.asset, version, "image_type", failed="onnxruntime: invalid input")

    run_classified_finish(run_id=run.pk)

    run.refresh_from_db()
    assert (run.status, run.failure_reasons) == (Run.Status.PARTIAL, {"classification_failed": 1})
    assert run.health_flags[0]["message"] == "the model failed on 1 image: they are shown as failed, not tagged"
    assert run.label_shares == {"image_type": {"Dealer": 1.0}}


# advertisers_health -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_advertisers_health_figures(monkeypatch):
    version = active_model("image_type", "color")
    retired = active_model("image_type", status=ModelVersion.Status.RETIRED, active=False)
    acme, bolt, _idle = (AdvertiserFactory(name=name) for name in ("Acme", "Bolt", "Idle"))
    first, second, bolts = (SitemapFactory(advertiser=advertiser) for advertiser in (acme, acme, bolt))
    older = finished_run(first)
    newest = finished_run(second, health_flags=[{"code": "ml_failed", "message": "the model failed on 2 images"}])
    RunFactory(sitemap=bolts, status=Run.Status.RUNNING)
    assets = [image(first).asset, image(first).asset, image(second).asset, image(second).asset]
    image(second, status=Placement.Status.FAILED)
    gone = image(first, is_gone=True).asset
    image(first, listing=ListingFactory(sitemap=first, is_gone=True))  # a listing that left the inventory
    for asset, label in zip(assets, ("Dealer", "Dealer", "Dealer", "Placeholder"), strict=True):
        classify(asset, version, "image_type", label)
        classify(asset, retired, "image_type", "Stock")  # not the active model: not counted
    classify(assets[0], version, "color", "Red")
    classify(assets[1], version, "color", "Blue")
    classify(assets[2], version, "color", failed="timeout")  # no tag: not counted
    classify(gone, version, "image_type", "Dealer")  # not live: not counted
    image(bolts, assets[0])  # the same picture at another advertiser

    staff = UserFactory(is_staff=True)
    fix(acme, assets[2], "image_type", "Stock", user=staff)  # overturns the model
    fix(acme, assets[0], "color", "Red", user=staff)  # confirms it
    fix(acme, assets[1], "sensitive", "sensitive", ManualFix.Source.ADVERTISER)
    fix(acme, assets[1], "sensitive", "not sensitive")  # disagrees with the advertiser
    fix(acme, assets[0], "sensitive", "not sensitive", ManualFix.Source.ADVERTISER)
    origin = fix(acme, assets[0], "sensitive", "not sensitive")  # agrees
    fix(acme, gone, "sensitive", "sensitive", ManualFix.Source.CARRIED, origin=origin)  # carried: not counted
    long_ago = timezone.now() - timedelta(days=31)
    monkeypatch.setattr(timezone, "now", lambda: long_ago)
    fix(acme, gone, "color", "Red")
    monkeypatch.undo()

    rows = {row.advertiser.name: row for row in health.advertisers_health()}

    assert list(rows) == ["Acme", "Bolt", "Idle"]
    acme_health = rows["Acme"]
    assert (acme_health.sitemaps, acme_health.images, acme_health.failed_images) == (2, 5, 1)
    assert acme_health.last_run is not None
    assert (acme_health.last_run.id, acme_health.last_run.status) == (newest.pk, "succeeded")
    assert acme_health.last_run.messages == ["the model failed on 2 images"]
    assert acme_health.last_run.id != older.pk
    assert acme_health.image_type_shares == {"Dealer": 0.5, "Placeholder": 0.25, "Stock": 0.25}
    assert acme_health.fixes_last_30_days == 6
    assert (acme_health.model_tags, acme_health.overturned, acme_health.disagreements) == (6, 1, 1)
    assert acme_health.overturned_share == pytest.approx(1 / 6)
    # Local accuracy counts only what a human looked at: one image type overturned, one color confirmed.
    assert {task: (a.reviewed, a.correct) for task, a in acme_health.accuracy.items()} == {
        "image_type": (1, 0), "color": (1, 1)
    }  # fmt: skip

    bolt_health = rows["Bolt"]
    assert (bolt_health.sitemaps, bolt_health.images, bolt_health.last_run.status) == (1, 1, "running")
    assert (bolt_health.model_tags, bolt_health.overturned_share, bolt_health.fixes_last_30_days) == (2, 0.0, 0)
    assert bolt_health.accuracy == {}  # nobody looked at Bolt's tags: no figure, not 100%
    assert bolt_health.image_type_shares == {"Dealer": 1.0}

    idle_health = rows["Idle"]
    assert (idle_health.sitemaps, idle_health.last_run, idle_health.images) == (0, None, 0)
    assert (idle_health.overturned_share, idle_health.image_type_shares, idle_health.disagreements) == (None, {}, 0)


@pytest.mark.django_db
def test_local_accuracy_counts_only_reviewed_tags_with_an_interval():
    sitemap = SitemapFactory()
    asset = image(sitemap).asset
    [row] = health.advertisers_health()
    assert (row.model_tags, row.overturned_share, row.accuracy) == (0, None, {})  # no active model at all

    version = active_model("image_type")
    classify(asset, version, "image_type", "Dealer")
    [row] = health.advertisers_health()
    assert (row.model_tags, row.overturned, row.overturned_share, row.accuracy) == (1, 0, 0.0, {})  # unreviewed

    fix(sitemap.advertiser, asset, "image_type", "Stock")
    accuracy = health.advertisers_health()[0].image_type_accuracy
    assert (accuracy.reviewed, accuracy.correct, accuracy.accuracy) == (1, 0, 0.0)
    fix(sitemap.advertiser, asset, "image_type", "Dealer")  # reverted: the model was right after all
    accuracy = health.advertisers_health()[0].image_type_accuracy
    assert (accuracy.reviewed, accuracy.correct, accuracy.accuracy) == (1, 1, 1.0)
    low, high = accuracy.interval
    assert high == 1.0
    assert low < 0.25  # one review says little: the interval shows it

    others = [image(sitemap).asset for _ in range(40)]
    for n, other in enumerate(others):
        classify(other, version, "image_type", "Dealer")
        fix(sitemap.advertiser, other, "image_type", "Dealer" if n % 10 else "Stock", ManualFix.Source.ADVERTISER)
    carried = image(sitemap).asset
    classify(carried, version, "image_type", "Dealer")
    fix(sitemap.advertiser, carried, "image_type", "Stock", ManualFix.Source.CARRIED, origin=ManualFix.objects.last())
    accuracy = health.advertisers_health()[0].image_type_accuracy
    assert (accuracy.reviewed, accuracy.correct) == (41, 37)  # carried fixes: nobody looked at them
    low, high = accuracy.interval
    assert low < 37 / 41 < high
    assert high - low < 0.25


def build_advertisers(n, version):
    for _ in range(n):
        advertiser = AdvertiserFactory()
        sitemap = SitemapFactory(advertiser=advertiser)
        finished_run(sitemap, health_flags=[{"code": "cdn_changed", "message": "..."}])
        for label in ("Dealer", "Stock"):
            placement = image(sitemap)
            classify(placement.asset, version, "image_type", label, margin=0.1)
            fix(advertiser, placement.asset, "image_type", "Placeholder", ManualFix.Source.ADVERTISER)
            fix(advertiser, placement.asset, "image_type", "Dealer")
        image(sitemap, status=Placement.Status.FAILED)


@pytest.mark.django_db
@pytest.mark.parametrize("advertisers", [3, 10])
def test_advertisers_health_runs_a_constant_number_of_queries(advertisers, django_assert_max_num_queries):
    build_advertisers(advertisers, active_model("image_type", "color"))
    with django_assert_max_num_queries(11):
        rows = health.advertisers_health()
    assert len(rows) == advertisers
    assert {(row.images, row.failed_images, row.model_tags, row.overturned, row.disagreements) for row in rows} == {
        (3, 1, 2, 1, 2)
    }


# review_queue -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_review_queue_puts_what_most_needs_a_human_first(django_assert_max_num_queries):
    version = active_model("image_type", "color")
    advertiser = AdvertiserFactory()
    sitemap = SitemapFactory(advertiser=advertiser)
    failed, conflict, overturned, hesitant, sure, settled = (image(sitemap) for _ in range(6))
    classify(failed.asset, version, "image_type", failed="onnxruntime: bad input")
    classify(conflict.asset, version, "image_type", "Dealer")
    fix(advertiser, conflict.asset, "image_type", "Stock")
    fix(advertiser, conflict.asset, "image_type", "Dealer", ManualFix.Source.ADVERTISER)
    classify(overturned.asset, version, "image_type", "Dealer", confidence=0.5)
    fix(advertiser, overturned.asset, "image_type", "Stock", ManualFix.Source.ADVERTISER)
    classify(hesitant.asset, version, "image_type", "Dealer", confidence=0.5, margin=0.04)
    classify(hesitant.asset, version, "color", "Red", confidence=0.45, margin=0.3)
    classify(sure.asset, version, "image_type", "Dealer", confidence=0.99, margin=0.98)
    classify(settled.asset, version, "image_type", "Dealer", margin=0.01)
    fix(advertiser, settled.asset, "image_type", "Stock")  # staff decided after the model: nothing to review
    image(sitemap, hesitant.asset)  # the same picture twice in the sitemap: one item
    image(SitemapFactory(advertiser=advertiser), hesitant.asset, is_gone=True)

    with django_assert_max_num_queries(9):  # one per task, one for reused pictures with their fixes
        queue = health.review_queue()

    assert [(item.placement_id, item.task, item.kind, item.priority, item.reason) for item in queue] == [
        (failed.pk, "image_type", "failed", 3.0, "inference failed: onnxruntime: bad input"),
        (conflict.pk, "image_type", "conflict", 2.5, "advertiser and staff disagree: Dealer vs Stock"),
        (overturned.pk, "image_type", "disagreement", 2.2, "fix (advertiser) says Stock, the model says Dealer (0.50)"),
        # teaching value: 0.5 + (1 - margin) / 2 for a familiar image
        (hesitant.pk, "image_type", "hesitated", 0.98, "model hesitated: margin 0.04"),
        (hesitant.pk, "color", "hesitated", 0.85, "model unsure: confidence 0.45"),
    ]
    item = queue[3]
    assert (item.model_label, item.confidence, item.margin, item.fix_label, item.fix_source) == (
        "Dealer", 0.5, 0.04, None, ""
    )  # fmt: skip
    assert (item.advertiser_id, item.asset_id, item.placement.listing.sitemap.advertiser) == (
        advertiser.pk, hesitant.asset_id, advertiser
    )  # fmt: skip
    assert [item.placement_id for item in health.review_queue(limit=2)] == [failed.pk, conflict.pk]


@pytest.mark.django_db
def test_a_staff_decision_leaves_the_queue_until_the_model_says_something_new():
    version = active_model("image_type")
    placement = image(SitemapFactory())
    advertiser = placement.listing.sitemap.advertiser
    result = classify(placement.asset, version, "image_type", "Dealer", margin=0.05)
    assert [item.kind for item in health.review_queue()] == ["hesitated"]

    decision = fix(advertiser, placement.asset, "image_type", "Stock")
    assert health.review_queue() == []

    # An advertiser overrides staff: a conflict, whoever fixes the scope next, until staff settle it in the queue.
    fix(advertiser, placement.asset, "image_type", "Dealer", ManualFix.Source.ADVERTISER)
    assert [item.kind for item in health.review_queue()] == ["conflict"]
    fix(advertiser, placement.asset, "image_type", "Stock", ManualFix.Source.API)  # staff through the API count
    assert [item.reason for item in health.review_queue()] == ["advertiser and staff disagree: Dealer vs Stock"]
    decision = fix(advertiser, placement.asset, "image_type", "Stock", settles=True)  # a queue decision
    assert health.review_queue() == []

    # A result of the model newer than the decision (a re-run) brings the open question back.
    Classification.objects.filter(pk=result.pk).update(updated_at=decision.created_at + timedelta(days=1))
    assert [item.kind for item in health.review_queue()] == ["disagreement"]


@pytest.mark.django_db
def test_review_queue_is_one_item_per_advertiser_and_can_be_restricted_to_some():
    version = active_model("image_type", "color")
    shared = ImageAssetFactory()
    ours, theirs = SitemapFactory(), SitemapFactory()
    our_placement, their_placement = image(ours, shared), image(theirs, shared)
    classify(shared, version, "image_type", "Stock", margin=0.1)
    configured = image(ours, attributes={"color": "red"})  # the scrape's color wins: the model's doubt is moot
    classify(configured.asset, version, "color", "Blue", margin=0.05)

    assert sorted(item.placement_id for item in health.review_queue()) == [our_placement.pk, their_placement.pk]
    [item] = health.review_queue(user_advertiser_ids=[theirs.advertiser_id])
    assert (item.placement_id, item.advertiser_id, item.reason) == (
        their_placement.pk, theirs.advertiser_id, "model hesitated: margin 0.10"
    )  # fmt: skip
    assert health.review_queue(user_advertiser_ids=[]) == []
