"""The near-duplicate rule (catalog.services.clusters.near_duplicates): pHash within CARRY_FORWARD_MAX_DISTANCE bits and
color signature within CARRY_FORWARD_MAX_COLOR_DISTANCE. Measured on generated renders: copies (JPEG 60-95, resized
50-100%, WebP, PNG) are near-duplicates, the same render in another paint is not; clusters follow the rule, and the
migration gives existing assets a signature and their clusters the rule."""

import importlib
import io
import itertools

import numpy as np
import pytest
from django.apps import apps
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from PIL import Image

from benchmarks.management.commands.measure_near_duplicates import copies, render
from catalog.apps import COLOR_SIGNATURE_MIGRATION, clusters_rebuild_after_migration
from catalog.imaging import (
    color_distance,
    color_signature,
    color_signature_array,
    inspect_image,
    phash_distance,
)
from catalog.models import ImageAsset
from catalog.services import assets_cluster
from catalog.services.clusters import near_duplicates
from tests.factories import GREY_SIGNATURE, ImageAssetFactory

PAINTS = ("Black", "Blue", "Grey", "White", "Red", "Brown")


def is_near(a, b) -> bool:
    signatures_a, signatures_b = color_signature_array([a.color_signature]), color_signature_array([b.color_signature])
    return bool(near_duplicates(np.array([phash_distance(a.phash, b.phash)]), signatures_a, signatures_b)[0])


@pytest.mark.parametrize(("scene", "kind"), [(1, "Stock"), (2, "Stock"), (3, "Dealer")])
def test_copies_are_near_duplicates_and_other_paints_are_not(scene, kind):
    painted = {color: render(scene, kind, color) for color in PAINTS}
    keys = {color: inspect_image(data) for color, data in painted.items()}
    original = keys["Black"]

    copied = [inspect_image(copy) for copy in copies(painted["Black"])]
    assert len(copied) == 12
    assert all(is_near(original, copy) for copy in copied)
    # pHash alone takes some paints for the same picture (it is computed in grey); the rule takes none.
    pairs = list(itertools.combinations(PAINTS, 2))
    if kind == "Stock":
        assert any(
            phash_distance(keys[a].phash, keys[b].phash) <= settings.CARRY_FORWARD_MAX_DISTANCE for a, b in pairs
        )
    assert not any(is_near(keys[a], keys[b]) for a, b in pairs)


def test_the_signature_from_the_stored_thumbnail_is_the_fetched_one():
    facts = inspect_image(render(4, "Dealer", "Green"))
    backfilled = color_signature(Image.open(io.BytesIO(facts.thumbnail_jpeg)).convert("RGB"))
    distance = color_distance(color_signature_array([facts.color_signature]), color_signature_array([backfilled]))
    assert distance[0] < settings.CARRY_FORWARD_MAX_COLOR_DISTANCE / 2


def test_no_signature_is_near_nothing():
    facts = inspect_image(render(1, "Stock", "Black"))
    unknown = type(facts)(**{**facts.__dict__, "color_signature": ""})
    assert is_near(facts, facts)
    assert not is_near(facts, unknown)
    assert not is_near(unknown, unknown)


@pytest.mark.django_db
def test_a_cluster_takes_only_near_duplicates_in_color_too():
    other_paint = GREY_SIGNATURE[:-2] + "ff"  # one cell far off (b = +127)
    root = ImageAssetFactory(phash="0" * 16)
    copy = ImageAssetFactory(phash="0" * 15 + "3")  # 2 bits, the same colors
    repainted = ImageAssetFactory(phash="0" * 16, color_signature=other_paint)  # 0 bits, another paint
    unknown = ImageAssetFactory(phash="0" * 16, color_signature="")

    assets_cluster(asset_ids=[root.pk, copy.pk, repainted.pk, unknown.pk])

    clusters = dict(ImageAsset.objects.values_list("id", "cluster_id"))
    assert [clusters[a.pk] for a in (root, copy, repainted, unknown)] == [root.pk, root.pk, repainted.pk, unknown.pk]


@pytest.mark.django_db
def test_the_migration_gives_assets_a_signature_and_the_clusters_the_rule():
    black, blue = inspect_image(render(1, "Stock", "Black")), inspect_image(render(1, "Stock", "Blue"))
    assets = []
    for facts in (black, blue):
        name = default_storage.save(f"thumbnails/{facts.sha256}.jpg", io.BytesIO(facts.thumbnail_jpeg))
        assets.append(ImageAssetFactory(phash=facts.phash, thumbnail=name, color_signature=""))
    lost = ImageAssetFactory(phash=black.phash, thumbnail="thumbnails/gone.jpg", color_signature="")
    # Clustered by pHash alone, as before the migration: the two paints are one picture.
    ImageAsset.objects.update(cluster_id=assets[0].pk)

    migration = importlib.import_module("catalog.migrations.0008_asset_color_signature")
    migration.signatures_from_thumbnails(apps, None)
    plan = [(MigrationLoader(connection).get_migration(*COLOR_SIGNATURE_MIGRATION), False)]
    clusters_rebuild_after_migration(apps.get_app_config("catalog"), plan=plan)

    stored = dict(ImageAsset.objects.values_list("id", "color_signature"))
    assert stored[lost.pk] == ""  # its thumbnail is gone: near nothing
    for asset, facts in zip(assets, (black, blue), strict=True):
        fetched, backfilled = color_signature_array([facts.color_signature]), color_signature_array([stored[asset.pk]])
        assert color_distance(fetched, backfilled)[0] < settings.CARRY_FORWARD_MAX_COLOR_DISTANCE / 2
    clusters = dict(ImageAsset.objects.values_list("id", "cluster_id"))
    assert [clusters[a.pk] for a in (*assets, lost)] == [assets[0].pk, assets[1].pk, lost.pk]


@pytest.mark.django_db
def test_the_post_migrate_rebuild_runs_only_after_the_signature_migration(django_assert_num_queries):
    ImageAssetFactory()
    with django_assert_num_queries(0):
        clusters_rebuild_after_migration(apps.get_app_config("catalog"), plan=None)  # a flush
        clusters_rebuild_after_migration(apps.get_app_config("catalog"), plan=[])


def test_the_measurement_command_prints_its_table():
    out = io.StringIO()
    call_command("measure_near_duplicates", scenes=1, generated=6, stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    names = ("re-encode, Stock", "other paint, Dealer", "other photo", "backfill", "generated, same color", "sweep")
    assert all(name in text for name in names), text
    assert "missed 0 (0.00%)" in text
