"""Near-duplicate clusters: links by pHash distance, transitive, rooted at the lowest asset id, kept by each
Run's new assets (incremental) and equal to a full rebuild."""

import importlib
import io
import random

import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import call_command

from catalog.models import ImageAsset
from catalog.services import assets_cluster, clusters_rebuild
from tests.factories import ImageAssetFactory

pytestmark = pytest.mark.django_db


def phash(*bits: int, base: int = 0) -> str:
    """A 16-hex-digit hash: `base` with these bits flipped."""
    value = base
    for bit in bits:
        value ^= 1 << bit
    return f"{value:016x}"


def asset(*bits: int, base: int = 0) -> ImageAsset:
    return ImageAssetFactory(phash=phash(*bits, base=base))


def clusters_of(*assets: ImageAsset) -> list[int | None]:
    found = dict(ImageAsset.objects.filter(id__in=[a.pk for a in assets]).values_list("id", "cluster_id"))
    return [found[a.pk] for a in assets]


FAR = (1 << 64) - 1  # every bit differs from 0


def test_a_cluster_is_its_root_and_the_pictures_near_it_never_a_chain():
    assert settings.CARRY_FORWARD_MAX_DISTANCE == 10
    a = asset()
    b = asset(*range(8))  # 8 bits from a
    c = asset(*range(16))  # 8 bits from b, 16 from a: no chain puts it with a
    alone = asset(base=FAR)
    also_alone = asset(*range(11), base=FAR)  # 11 bits from `alone`: one more than the threshold

    assert assets_cluster(asset_ids=[a.pk, b.pk, c.pk, alone.pk, also_alone.pk]) == 5
    assert clusters_of(a, b, c, alone, also_alone) == [a.pk, a.pk, c.pk, alone.pk, also_alone.pk]
    assert assets_cluster(asset_ids=[a.pk, b.pk, c.pk]) == 0  # idempotent


def test_nothing_new_reads_no_hash(django_assert_max_num_queries):
    assets_cluster(asset_ids=[asset().pk, asset(base=FAR).pk])
    with django_assert_max_num_queries(3):  # savepoint, one EXISTS, release
        assert assets_cluster(asset_ids=[]) == 0


def test_a_new_asset_joins_the_nearest_root_and_moves_nobody(django_assert_max_num_queries):
    low = asset()
    high = asset(*range(20))  # 20 bits from `low`: another cluster
    high_member = asset(*range(18))  # 2 bits from `high`, 18 from `low`
    assets_cluster(asset_ids=[low.pk, high.pk, high_member.pk])
    assert clusters_of(low, high, high_member) == [low.pk, high.pk, high.pk]

    between = asset(*range(12))  # 12 bits from `low`, 8 from `high`: the nearer root within the threshold
    # savepoint, lock, the assets to place, the table's size (MAX(id)), the roots near them (one query per pHash piece,
    # or one of every asset), the signatures of those near in bits, one UPDATE, the placements showing them (reviews'
    # stored tags follow, under the store's writer lock, on PostgreSQL an advisory lock), release
    with django_assert_max_num_queries(13):
        changed = assets_cluster(asset_ids=[between.pk])

    assert changed == 1  # only the newcomer: existing clusters never move
    assert clusters_of(low, high, high_member, between) == [low.pk, high.pk, high.pk, high.pk]


def test_an_asset_without_a_cluster_is_clustered_with_the_next_call():
    """An asset whose Run died before the clustering step is not left out."""
    first = asset()
    assets_cluster(asset_ids=[first.pk])
    orphan = asset(3)
    newcomer = asset(base=FAR)
    assert assets_cluster(asset_ids=[newcomer.pk]) == 2
    assert clusters_of(first, orphan, newcomer) == [first.pk, first.pk, newcomer.pk]


def random_hashes(count: int, *, seed: int) -> list[str]:
    """Families of near copies of a few random photos, and some chains, in a random order."""
    rng = random.Random(seed)
    hashes = []
    for _ in range(count // 4):
        base = rng.getrandbits(64)
        hashes.append(phash(base=base))
        hashes.extend(phash(*rng.sample(range(64), rng.randint(0, 14)), base=base) for _ in range(3))
    rng.shuffle(hashes)
    return hashes


def test_incremental_clusters_equal_a_rebuild():
    hashes = random_hashes(80, seed=5)
    for start in range(0, len(hashes), 7):  # Runs bringing a few new assets each
        batch = [ImageAssetFactory(phash=value) for value in hashes[start : start + 7]]
        assets_cluster(asset_ids=[a.pk for a in batch])
    incremental = dict(ImageAsset.objects.values_list("id", "cluster_id"))
    assert len(set(incremental.values())) < len(incremental)  # some clusters have several members

    ImageAsset.objects.update(cluster_id=None)
    assert clusters_rebuild() == len(incremental)
    assert dict(ImageAsset.objects.values_list("id", "cluster_id")) == incremental
    assert clusters_rebuild() == 0


@pytest.mark.parametrize("new_assets", [1, 40])
def test_the_queries_do_not_grow_with_the_new_assets(new_assets, django_assert_max_num_queries):
    for value in random_hashes(40, seed=9):
        ImageAssetFactory(phash=value)
    assets_cluster(asset_ids=[])
    batch = [ImageAssetFactory(phash=value) for value in random_hashes(new_assets * 4, seed=11)[:new_assets]]
    # savepoint, lock, the assets to place, the table's size (MAX(id)), the roots near them (one query per pHash piece,
    # or one of every asset), the signatures of those near in bits, one UPDATE, the placements showing them (reviews'
    # stored tags follow, under the store's writer lock, on PostgreSQL an advisory lock), release
    with django_assert_max_num_queries(13):
        assert assets_cluster(asset_ids=[a.pk for a in batch]) >= new_assets


def test_the_command_and_the_migration_rebuild_every_cluster():
    a, b, alone = asset(), asset(1, 2), asset(base=FAR)
    out = io.StringIO()
    call_command("rebuild_clusters", stdout=out)
    assert out.getvalue().startswith("3 images in 2 clusters; 3 changed cluster")
    assert clusters_of(a, b, alone) == [a.pk, a.pk, alone.pk]

    ImageAsset.objects.update(cluster_id=None)
    migration = importlib.import_module("catalog.migrations.0007_asset_cluster")
    migration.assets_cluster_all(apps, None)
    assert clusters_of(a, b, alone) == [a.pk, a.pk, alone.pk]
