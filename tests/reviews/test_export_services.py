"""The dataset export's services: what goes in, what stays out and why, filters, the split in the database,
stickiness and extension, empty exports, freezing (the zip, the manifest, the SHA-256) and immutability."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from PIL import Image

from catalog.models import ImageAsset
from classifier.models import Classification
from reviews.exports import (
    ExportError,
    export_create,
    export_decide,
    export_freeze,
    export_mark_used,
    export_summary,
    training_manifest,
)
from reviews.exports.services import export_build
from reviews.models import DatasetExport, ExportExclusion, ExportItem, ManualFix
from reviews.tasks import export_build_task
from tests.factories import ImageAssetFactory, ListingFactory, SitemapFactory

from .export_helpers import label, show, stored_asset

pytestmark = pytest.mark.django_db


def build(**kwargs) -> DatasetExport:
    kwargs.setdefault("task", "image_type")
    return export_create(enqueue=False, **kwargs)


def items_of(export: DatasetExport) -> dict[tuple[int, int], ExportItem]:
    return {(item.advertiser_id, item.asset_id): item for item in export.items.all()}


def excluded_of(export: DatasetExport) -> dict[int, str]:
    return {exclusion.asset_id: exclusion.reason for exclusion in export.exclusions.all()}


@pytest.fixture
def sitemap():
    return SitemapFactory()


def test_the_human_label_in_effect_goes_in_confirmations_too_carried_fixes_do_not(sitemap):
    advertiser = sitemap.advertiser_id
    fixed = show(sitemap, stored_asset(1))
    first = label(fixed, "Stock", old_label="Dealer")
    latest = label(fixed, "Placeholder", old_label="Stock", source="api")
    confirmed = show(sitemap, stored_asset(2))
    confirmation = label(confirmed, "Dealer", old_label="Dealer", source="advertiser")
    reverted = show(sitemap, stored_asset(3))
    wrong = label(reverted, "Stock", old_label="Dealer")
    revert = label(reverted, "Dealer", old_label="Stock", reverts=wrong)
    carried = show(sitemap, stored_asset(4))
    label(carried, "Stock", source="carried", origin=first)

    export = build()

    items = items_of(export)
    assert set(items) == {(advertiser, p.asset_id) for p in (fixed, confirmed, reverted)}
    got = {key[1]: (item.label, item.fix_id, item.source) for key, item in items.items()}
    assert got == {
        fixed.asset_id: ("Placeholder", latest.pk, "api"),
        confirmed.asset_id: ("Dealer", confirmation.pk, "advertiser"),
        reverted.asset_id: ("Dealer", revert.pk, "staff"),
    }
    assert items[(advertiser, fixed.asset_id)].listing_id == fixed.listing_id
    assert export.status == "review"
    assert export.progress == 1.0
    assert sum(export.counts["train"].values()) + sum(export.counts["test"].values()) == 3
    assert "likely label mistakes not looked for" in export.stage  # no model active


def test_each_reason_to_stay_out_is_recorded_and_counted(sitemap):
    ours, theirs = sitemap, SitemapFactory()
    good = show(ours, stored_asset(1))
    label(good, "Dealer")
    # An advertiser and staff disagree, unsettled.
    disputed = show(ours, stored_asset(2))
    label(disputed, "Stock", source="advertiser")
    label(disputed, "Dealer", source="staff")
    # Two advertisers disagree on the same picture.
    shared = stored_asset(3)
    label(show(ours, shared), "Dealer", source="advertiser")
    label(show(theirs, shared), "Stock", source="advertiser")
    # A failed image, a missing original, a tiny one.
    failed = show(ours, stored_asset(4), status="failed")
    label(failed, "Dealer")
    missing = show(ours, ImageAssetFactory(original=""))
    label(missing, "Dealer")
    tiny = show(ours, stored_asset(5, size=(40, 30)))
    label(tiny, "Dealer")

    export = build()

    assert set(items_of(export)) == {(ours.advertiser_id, good.asset_id)}
    assert excluded_of(export) == {
        disputed.asset_id: "conflict_advertiser_staff",
        shared.pk: "conflict_advertisers",
        failed.asset_id: "failed_image",
        missing.asset_id: "failed_image",
        tiny.asset_id: "too_small",
    }
    assert export.excluded == {
        "conflict_advertiser_staff": 1, "conflict_advertisers": 2, "failed_image": 2, "too_small": 1
    }  # fmt: skip
    # Settled by staff in the review queue: it goes in.
    label(disputed, "Dealer", source="staff", settles=True)
    assert (ours.advertiser_id, disputed.asset_id) in items_of(build())


def test_a_placeholder_has_no_color_so_color_exports_leave_it_out(sitemap):
    photo, placeholder = show(sitemap, stored_asset(1)), show(sitemap, stored_asset(2))
    for placement in (photo, placeholder):
        label(placement, "Red", task="color")
    label(placeholder, "Placeholder", task="image_type")

    export = build(task="color")

    assert set(items_of(export)) == {(sitemap.advertiser_id, photo.asset_id)}
    assert export.excluded == {"placeholder_no_color": 1}


def test_filters_since_advertisers_sources_and_min_side(sitemap):
    other = SitemapFactory()
    old = show(sitemap, stored_asset(1))
    label(old, "Dealer")
    cut = timezone.now()
    new_staff = show(sitemap, stored_asset(2, size=(200, 150)))
    label(new_staff, "Stock")
    new_portal = show(sitemap, stored_asset(3))
    label(new_portal, "Dealer", source="advertiser")
    theirs = show(other, stored_asset(4))
    label(theirs, "Dealer")

    assets = lambda export: {key[1] for key in items_of(export)}  # noqa: E731
    everything = {old.asset_id, new_staff.asset_id, new_portal.asset_id, theirs.asset_id}
    assert assets(build()) == everything  # no export used for training yet: everything
    assert assets(build(since=cut)) == everything - {old.asset_id}
    assert assets(build(advertisers=[other.advertiser.slug])) == {theirs.asset_id}
    assert assets(build(sources=["advertiser"])) == {new_portal.asset_id}
    assert assets(build(min_side=100)) == {new_staff.asset_id}
    assert build(min_side=100).excluded == {"too_small": 3}


def test_since_last_training_takes_the_fixes_made_after_that_export(sitemap):
    first = show(sitemap, stored_asset(1))
    label(first, "Dealer")
    used = export_freeze(export=build())
    export_mark_used(export=used)
    later = show(sitemap, stored_asset(2))
    label(later, "Stock")

    export = build()

    assert {key[1] for key in items_of(export)} == {later.asset_id}
    assert export.params["since_export"] == used.pk
    assert {key[1] for key in items_of(build(since_last_training=False))} == {first.asset_id, later.asset_id}


def test_only_images_the_advertiser_still_shows_go_in(sitemap):
    live = show(sitemap, stored_asset(1))
    label(live, "Dealer")
    gone = show(sitemap, stored_asset(2), is_gone=True)
    label(gone, "Stock")
    sold = show(sitemap, stored_asset(3), listing=ListingFactory(sitemap=sitemap, is_gone=True))
    label(sold, "Stock")
    assert {key[1] for key in items_of(build())} == {live.asset_id}


def test_an_export_with_no_items_is_an_error_and_creates_nothing(sitemap):
    tiny = show(sitemap, stored_asset(1, size=(40, 30)))
    label(tiny, "Dealer")
    with pytest.raises(ExportError, match="no labelled images match these filters: task image_type"):
        build()
    with pytest.raises(ExportError, match="no labelled images match"):
        build(task="color")
    assert not DatasetExport.objects.exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "shape"}, "unknown task 'shape'"),
        ({"advertisers": ["nobody"]}, "unknown advertiser: nobody"),
        ({"sources": ["carried"]}, "carried is not a source of human labels"),
        ({"extends": 999}, "export 999 does not exist"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(sitemap, kwargs, message):
    label(show(sitemap, stored_asset(1)), "Dealer")
    with pytest.raises(ExportError, match=message):
        build(**kwargs)
    assert not DatasetExport.objects.exists()


def _catalogue(sitemap, count: int, *, per_listing: int = 2, start: int = 0):
    """`count` labelled photos, `per_listing` per listing, labels cycling Dealer, Stock, Placeholder."""
    placements = []
    listing = None
    for i in range(start, start + count):
        if i % per_listing == 0:
            listing = ListingFactory(sitemap=sitemap)
        placement = show(sitemap, stored_asset(i), listing=listing)
        label(placement, ("Dealer", "Dealer", "Stock", "Placeholder")[i % 4])
        placements.append(placement)
    return placements


def test_listings_and_near_duplicate_clusters_never_span_train_and_test(sitemap):
    placements = _catalogue(sitemap, 60, per_listing=3)
    # Re-encoded copies: a picture in one listing is a near-duplicate of a picture in another listing.
    for a, b in [(0, 30), (4, 50), (10, 11)]:
        ImageAsset.objects.filter(pk__in=[placements[a].asset_id, placements[b].asset_id]).update(
            cluster_id=placements[a].asset_id
        )

    export = build()

    items = list(export.items.select_related("asset"))
    by_listing: dict[int, set[str]] = {}
    by_picture: dict[int, set[str]] = {}
    for item in items:
        by_listing.setdefault(item.listing_id, set()).add(item.split)
        by_picture.setdefault(item.asset.cluster_id or item.asset_id, set()).add(item.split)
    assert all(len(splits) == 1 for splits in [*by_listing.values(), *by_picture.values()])
    split_of = {item.asset_id: item.split for item in items}
    assert split_of[placements[0].asset_id] == split_of[placements[30].asset_id]
    group_of = {item.asset_id: item.group for item in items}
    assert group_of[placements[0].asset_id] == group_of[placements[30].asset_id] == group_of[placements[1].asset_id]
    # Stratified: every label has test items, about a fifth.
    assert set(export.counts["test"]) == {"Dealer", "Stock", "Placeholder"}
    assert 0.1 <= sum(export.counts["test"].values()) / len(items) <= 0.3


def test_test_images_stay_in_test_in_later_exports_and_extension_applies_changed_labels(sitemap):
    placements = _catalogue(sitemap, 40)
    first = export_freeze(export=build())
    tested = set(first.items.filter(split="test").values_list("asset_id", flat=True))
    assert tested

    # A fresh export with other settings still keeps every earlier test image in test.
    fresh = build(min_side=10)
    assert tested <= set(fresh.items.filter(split="test").values_list("asset_id", flat=True))

    # Changes since: one label fixed again, new photos.
    cut = timezone.now()
    changed = placements[0]
    old_label = first.items.get(asset_id=changed.asset_id).label
    label(changed, "Stock" if old_label != "Stock" else "Dealer", old_label=old_label)
    new = _catalogue(sitemap, 12, start=100)
    extension = build(extends=first, since=cut)  # the changed label and the new photos are new; the rest is kept

    before = {item.asset_id: item.split for item in first.items.all()}
    after = {item.asset_id: (item.split, item.label) for item in extension.items.all()}
    assert set(after) == set(before) | {p.asset_id for p in new}
    assert all(after[asset][0] == split for asset, split in before.items() if split == "test")
    assert after[changed.asset_id][1] != old_label
    assert extension.changed == [
        {"asset": changed.asset_id, "advertiser": sitemap.advertiser.slug, "old": old_label,
         "new": after[changed.asset_id][1]}
    ]  # fmt: skip
    assert extension.extends == first


def test_extending_needs_a_frozen_export_of_the_same_task(sitemap):
    label(show(sitemap, stored_asset(1)), "Dealer")
    unfrozen = build()
    with pytest.raises(ExportError, match="not frozen"):
        build(extends=unfrozen)


def test_freezing_writes_the_imagefolder_zip_the_manifest_and_its_sha256(sitemap):
    big = stored_asset(1, size=(200, 100))
    photo = show(sitemap, big)
    fix = label(photo, "Stock")
    _catalogue(sitemap, 9, start=10)
    export = build()
    ExportItem.objects.filter(export=export, asset=big).update(crop_box=[20, 10, 120, 90])

    frozen = export_freeze(export=export)

    assert frozen.status == "frozen"
    assert frozen.frozen_at is not None
    with default_storage.open(frozen.file.name, "rb") as handle:
        data = handle.read()
    assert hashlib.sha256(data).hexdigest() == frozen.sha256
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = set(archive.namelist())
    lines = [json.loads(line) for line in archive.read("manifest.jsonl").decode().splitlines()]
    assert len(lines) == 10
    with default_storage.open(frozen.manifest.name, "rb") as handle:
        assert handle.read() == archive.read("manifest.jsonl")
    row = next(line for line in lines if line["asset"] == big.pk)
    folder = f"{row['split']}/Stock"
    assert row["crop"] == f"{folder}/{big.sha256}.jpg"
    assert row["full"] == f"{folder}/{big.sha256}.full.jpg"
    assert {row["crop"], row["full"]} <= names
    assert (row["label"], row["sha256"], row["advertiser"], row["fix"], row["source"]) == (
        "Stock", big.sha256, sitemap.advertiser.slug, fix.pk, "staff"
    )  # fmt: skip
    assert (row["listing"], row["listing_url"], row["crop_box"]) == (
        photo.listing_id,
        photo.listing.url,
        [20, 10, 120, 90],
    )
    # The full image is the original, byte for byte; the crop is the box of it, as the model sees it.
    assert hashlib.sha256(archive.read(row["full"])).hexdigest() == big.sha256
    assert Image.open(io.BytesIO(archive.read(row["crop"]))).size == (100, 80)
    assert all(name.split("/")[0] in ("train", "test") for name in names - {"manifest.jsonl"})
    assert {line["split"] for line in lines} == {"train", "test"}


def test_a_frozen_export_is_immutable(sitemap):
    _catalogue(sitemap, 8)
    export = build()
    item = export.items.first()
    ExportItem.objects.filter(pk=item.pk).update(decision="pending")

    with pytest.raises(ExportError, match=r"1 likely label mistakes of export \d+ are still to look at"):
        export_freeze(export=export)
    export_decide(export=export, item_id=item.pk, decision="drop")
    frozen = export_freeze(export=export)

    assert frozen.excluded == {"dropped": 1}
    assert sum(sum(labels.values()) for labels in frozen.counts.values()) == 7
    assert item.asset_id not in {entry["asset"] for entry in training_manifest(export=frozen)["items"]}
    for change in (
        lambda: export_decide(export=frozen, item_id=item.pk, decision="keep"),
        lambda: export_freeze(export=frozen),
        lambda: export_build(export_id=frozen.pk),
    ):
        with pytest.raises(ExportError, match="is frozen: it cannot change"):
            change()


def test_freezing_keeps_pending_items_when_asked(sitemap):
    _catalogue(sitemap, 4)
    export = build()
    ExportItem.objects.filter(export=export).update(decision="pending")
    frozen = export_freeze(export=export, keep_pending=True)
    assert set(frozen.items.values_list("decision", flat=True)) == {"keep"}
    assert len(training_manifest(export=frozen)["items"]) == 4


def test_the_build_runs_as_a_celery_task_after_commit_and_a_rerun_redoes_it(
    sitemap, django_capture_on_commit_callbacks
):
    _catalogue(sitemap, 6)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        export = export_create(task="image_type")
    assert len(callbacks) == 1
    assert (export.status, export.items.count()) == ("building", 0)
    assert export_build_task.name == "reviews.export_build"

    export_build_task(export.pk)
    export.refresh_from_db()
    assert (export.status, export.items.count()) == ("review", 6)

    # A worker that died mid-build: the task comes again and redoes the build from scratch.
    DatasetExport.objects.filter(pk=export.pk).update(status="building")
    ExportItem.objects.filter(export=export).first().delete()
    export_build_task(export.pk)
    export.refresh_from_db()
    assert (export.status, export.items.count()) == ("review", 6)


def test_training_manifest_samples_every_advertisers_confident_unlabelled_model_tags_as_the_guard(
    sitemap, register_tiny, settings
):
    settings.LOOP_GUARD_SAMPLE = 2
    version = register_tiny()
    fixed = show(sitemap, stored_asset(1))
    label(fixed, "Red", task="color")
    mine = show(sitemap, stored_asset(2))
    other = SitemapFactory()
    confident = [show(other, stored_asset(10 + i)) for i in range(3)]
    unsure, gone, failed = (show(other, stored_asset(20)), show(other, stored_asset(21), is_gone=True),
                            show(other, stored_asset(22), status="failed"))  # fmt: skip
    scraped = show(other, stored_asset(23), listing=ListingFactory(sitemap=other, attributes={"color": "red"}))
    for placement, confidence in [(fixed, 0.99), (mine, 0.97), *((p, 0.95) for p in confident), (unsure, 0.5),
                                  (gone, 0.99), (failed, 0.99), (scraped, 0.99)]:  # fmt: skip
        Classification.objects.create(
            asset=placement.asset, model_version=version, task="color", label="blue", confidence=confidence
        )
    frozen = export_freeze(export=build(task="color"), keep_pending=True)

    guard = training_manifest(export=frozen)["guard"]

    # Per advertiser, up to LOOP_GUARD_SAMPLE live images whose tag in effect is a confident model tag: not the
    # fixed one, the unsure one, the gone or failed ones, nor the one whose color the scrape gives.
    assert [row for row in guard if row["advertiser"] == sitemap.advertiser.slug] == [
        {"asset": mine.asset_id, "advertiser": sitemap.advertiser.slug}
    ]
    others = [row["asset"] for row in guard if row["advertiser"] == other.advertiser.slug]
    assert len(others) == 2
    assert set(others) < {p.asset_id for p in confident}
    assert training_manifest(export=frozen)["guard"] == guard  # deterministic


def test_summary_counts_and_imbalance(sitemap):
    _catalogue(sitemap, 12)  # Dealer 6, Stock 3, Placeholder 3
    summary = export_summary(build())
    assert [(row.label, row.total) for row in summary.labels] == [("Dealer", 6), ("Stock", 3), ("Placeholder", 3)]
    assert summary.total == 12
    assert summary.imbalance == 2.0


def test_training_manifest_hands_items_and_confident_unfixed_model_tags(sitemap, register_tiny):
    version = register_tiny()  # a color head (red, green, blue), active
    placements = []
    for i in range(4):
        placement = show(sitemap, stored_asset(i))
        label(placement, "Red", task="color")
        placements.append(placement)
    unfixed = [show(SitemapFactory(), stored_asset(10 + i)) for i in range(3)]
    for placement, confidence in zip(unfixed, (0.95, 0.92, 0.5), strict=True):
        Classification.objects.create(
            asset=placement.asset, model_version=version, task="color", label="blue", confidence=confidence
        )
    Classification.objects.create(  # fixed (an item): not retained
        asset=placements[0].asset, model_version=version, task="color", label="red", confidence=0.99
    )
    frozen = export_freeze(export=build(task="color"), keep_pending=True)

    manifest = training_manifest(export=frozen)

    assert (manifest["export"], manifest["task"], manifest["labels"][:2]) == (frozen.pk, "color", ["Black", "Blue"])
    assert sorted(item["asset"] for item in manifest["items"]) == sorted(p.asset_id for p in placements)
    assert {item["advertiser"] for item in manifest["items"]} == {sitemap.advertiser.slug}
    assert all(set(item) == {"asset", "label", "split", "advertiser", "group"} for item in manifest["items"])
    assert sorted(manifest["retain"], key=lambda r: r["asset"]) == [
        {"asset": p.asset_id, "label": "Blue", "advertiser": p.listing.sitemap.advertiser.slug} for p in unfixed[:2]
    ]
    assert training_manifest(export=frozen) == manifest  # deterministic
    with pytest.raises(ExportError, match="not frozen"):
        training_manifest(export=build(task="color"))
    assert not ManualFix.objects.filter(asset_id__in=[p.asset_id for p in unfixed]).exists()
    assert ExportExclusion.objects.count() == 0


def test_the_build_costs_the_same_queries_whatever_the_number_of_items():
    def queries(count: int, start: int) -> int:
        sitemap = SitemapFactory()
        _catalogue(sitemap, count, start=start)
        with CaptureQueriesContext(connection) as captured:
            build(advertisers=[sitemap.advertiser.slug])
        return len(captured)

    assert queries(40, 0) == queries(5, 1000)


def test_training_manifest_rows_carry_the_vehicle_kind_the_active_detector_saw(
    sitemap, register_tiny, register_detector
):
    from classifier.models import Detection

    register_tiny()
    detector = register_detector(np.zeros((1, 5, 1), dtype=np.float32))
    placements = []
    for i in range(4):
        placement = show(sitemap, stored_asset(i))
        label(placement, "Red", task="color")
        placements.append(placement)
    Detection.objects.create(asset=placements[0].asset, model_version=detector, box=[0, 0, 8, 8], kind="motorcycle")
    Detection.objects.create(asset=placements[1].asset, model_version=detector, box=[0, 0, 8, 8], kind="")

    manifest = training_manifest(export=export_freeze(export=build(task="color"), keep_pending=True))

    kinds = {item["asset"]: item.get("kind") for item in manifest["items"]}
    assert kinds == {placements[0].asset_id: "motorcycle", **{p.asset_id: None for p in placements[1:]}}
