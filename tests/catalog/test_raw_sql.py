"""Every statement we write by hand gives what the ORM would, on the backend the suite runs on: CI runs the suite on
SQLite (the embedded default) and on PostgreSQL, so each statement here is checked on both."""

import datetime

import pytest
from django.utils import timezone

from catalog.models import ImageAsset, Placement
from catalog.services.assets import _insert_unless_known, asset_find
from catalog.services.image_fetch import _placements_set_validators
from classifier.models import Classification
from classifier.services.inference import ResultRow, _classifications_upsert
from tests.factories import ImageAssetFactory, PlacementFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_asset_find_gives_what_the_orm_gives():
    asset = ImageAssetFactory()
    found = asset_find(asset.sha256)
    assert found is not None
    asset_id, created_at = found
    assert asset_id == asset.pk
    # SQLite hands a raw datetime back naive: a Run compares it with an aware one (a TypeError before).
    assert timezone.is_aware(created_at)
    assert created_at == ImageAsset.objects.get(pk=asset.pk).created_at
    assert created_at < timezone.now() + datetime.timedelta(seconds=1)
    assert asset_find("0" * 64) is None


def test_insert_unless_known_inserts_once():
    template = ImageAssetFactory.build()
    assert _insert_unless_known(template)
    stored = ImageAsset.objects.get(pk=template.pk)
    assert (stored.sha256, stored.phash, stored.width, stored.format) == (
        template.sha256,
        template.phash,
        template.width,
        template.format,
    )
    assert timezone.is_aware(stored.created_at)
    again = ImageAssetFactory.build(sha256=template.sha256)
    assert not _insert_unless_known(again)
    assert ImageAsset.objects.filter(sha256=template.sha256).count() == 1


def test_placements_set_validators_writes_each_row():
    first, second = PlacementFactory(), PlacementFactory()
    asset = ImageAssetFactory()
    _placements_set_validators(
        [(first.pk, asset.pk, '"v1"', "Mon, 01 Jan 2024 00:00:00 GMT", 1234), (second.pk, asset.pk, "", "", None)]
    )
    rows = {p.pk: p for p in Placement.objects.filter(pk__in=[first.pk, second.pk])}
    assert (rows[first.pk].asset_id, rows[first.pk].etag, rows[first.pk].content_length) == (asset.pk, '"v1"', 1234)
    assert rows[first.pk].last_modified == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert (rows[second.pk].asset_id, rows[second.pk].etag, rows[second.pk].content_length) == (asset.pk, "", None)


def test_classifications_upsert_inserts_then_updates(register_tiny):
    version = register_tiny()
    asset = ImageAssetFactory()
    row = ResultRow(
        asset_id=asset.pk,
        model_version_id=version.pk,
        task="color",
        status=Classification.Status.OK,
        label="Red",
        confidence=0.9,
        margin=0.5,
        scores={"Red": 0.9, "Blue": 0.1},
        crop_box=[1, 2, 3, 4],
        crop_source=Classification.CropSource.DETECTOR,
    )
    _classifications_upsert([row])
    stored = Classification.objects.get(asset=asset, model_version=version, task="color")
    assert (stored.label, stored.confidence, stored.scores, stored.crop_box) == ("Red", 0.9, row.scores, [1, 2, 3, 4])
    assert timezone.is_aware(stored.created_at)
    _classifications_upsert([row._replace(label="Blue", scores=None, crop_box=None)])
    stored = Classification.objects.get(asset=asset, model_version=version, task="color")
    assert (stored.label, stored.scores, stored.crop_box) == ("Blue", {}, None)
    assert Classification.objects.filter(asset=asset).count() == 1
