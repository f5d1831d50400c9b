"""Clustering a Run's new images reads only candidates (multi-index hashing of the pHash: catalog.imaging.PHASH_PIECES
and catalog.services.clusters): the candidates hold every root within the threshold, the clusters are the ones
reading every asset gives, and on PostgreSQL the lookups use the piece indexes."""

import random
import re

import numpy as np
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from catalog.imaging import PHASH_PIECES, phash_piece_probes, phash_pieces
from catalog.models import ImageAsset
from catalog.services import assets_cluster, clusters
from tests.catalog.test_clusters import phash, random_hashes
from tests.factories import ImageAssetFactory


def flipped(value: int, bits: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), bits):
        value ^= 1 << bit
    return value


def test_every_hash_within_the_threshold_shows_a_probed_piece_and_the_probes_are_few():
    rng = random.Random(3)
    limit = settings.CARRY_FORWARD_MAX_DISTANCE
    for _ in range(3000):
        base = rng.getrandbits(64)
        near = f"{flipped(base, rng.randint(0, limit), rng):016x}"
        probes = phash_piece_probes([f"{base:016x}"], max_distance=limit)
        assert any(piece in probes[n] for n, piece in enumerate(phash_pieces(near))), (f"{base:016x}", near)
    # Within 2 bits of a 16-bit piece: 1 + 16 + 120 values a piece.
    assert [len(values) for values in phash_piece_probes(["0123456789abcdef"], max_distance=10)] == [137] * 4
    # One piece within 3 bits of its probe and all four so (12 bits): out of reach, as it must be at 10 bits.
    far = f"{0x0007_0007_0007_0007:016x}"
    probes = phash_piece_probes(["0000000000000000"], max_distance=10)
    assert not any(piece in probes[n] for n, piece in enumerate(phash_pieces(far)))
    assert PHASH_PIECES == 4


@pytest.mark.django_db
def test_clusters_through_the_index_are_the_clusters_of_reading_every_asset(monkeypatch):
    hashes = random_hashes(240, seed=21)
    batches = [hashes[start : start + 9] for start in range(0, len(hashes), 9)]  # Runs of a few new images each

    def cluster_all() -> dict[int, int]:
        ImageAsset.objects.all().delete()
        ids = []
        for batch in batches:
            made = [ImageAssetFactory(phash=value) for value in batch]
            ids += [a.pk for a in made]
            assets_cluster(asset_ids=[a.pk for a in made])
        found = dict(ImageAsset.objects.values_list("id", "cluster_id"))
        return {position: found[asset_id] - ids[0] for position, asset_id in enumerate(ids)}  # ids differ per pass

    read_every_asset = []
    monkeypatch.setattr(clusters, "_load", lambda real=clusters._load: read_every_asset.append(1) or real())
    monkeypatch.setattr(clusters, "_index_pays", lambda probes, assets: True)  # as in a big database
    through_index = cluster_all()
    assert read_every_asset == []  # the index served every call
    monkeypatch.setattr(clusters, "_index_pays", lambda probes, assets: False)
    read_all = cluster_all()
    assert len(read_every_asset) == len(batches)
    assert through_index == read_all
    assert len(set(through_index.values())) < len(through_index)  # some clusters have several members


@pytest.mark.parametrize(
    ("new_images", "assets", "index"),
    [(1, 20_000, True), (10, 20_000, False), (30, 1_000_000, True), (50, 1_000_000, False), (30, 10_000_000, True)],
)
def test_the_index_is_read_when_it_costs_less_than_every_asset(new_images, assets, index):
    """548 lookups a new image (137 values in each of 4 pieces), each bringing ~assets / 65,536 roots."""
    assert clusters._index_pays(new_images * 548, assets) is index


@pytest.mark.django_db
def test_a_run_of_many_new_images_in_a_small_database_reads_every_asset(monkeypatch):
    read_every_asset = []
    monkeypatch.setattr(clusters, "_load", lambda real=clusters._load: read_every_asset.append(1) or real())
    made = [ImageAssetFactory(phash=value) for value in random_hashes(400, seed=4)]
    assets_cluster(asset_ids=[a.pk for a in made])
    assert read_every_asset == [1]


@pytest.mark.django_db
def test_the_lookups_read_the_piece_indexes_on_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("query plans are checked on PostgreSQL (the production database)")
    rng = np.random.default_rng(7)
    ImageAsset.objects.bulk_create(
        ImageAsset(
            sha256=f"{n:064x}", phash=f"{int(value):016x}", width=1, height=1, format="JPEG", byte_size=1,
            cluster_id=None,
        )
        for n, value in enumerate(rng.integers(0, 2**63, size=20_000, dtype=np.int64))
    )  # fmt: skip
    ImageAsset.objects.update(cluster_id=F("id"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_imageasset")
    new = ImageAssetFactory(phash=phash(3, base=0x1234_5678_9ABC_DEF0))
    with CaptureQueriesContext(connection) as queries:
        assets_cluster(asset_ids=[new.pk])
    lookups = [q["sql"] for q in queries.captured_queries if "SUBSTR" in q["sql"]]
    assert len(lookups) == PHASH_PIECES
    for sql in lookups:
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert re.search(r"catalog_asset_phash_piece_\d", plan), plan
        assert "Seq Scan on catalog_imageasset" not in plan, plan


def F_id():
    from django.db.models import F

    return F("id")


@pytest.mark.django_db
def test_the_lookups_read_the_piece_indexes_on_sqlite():
    if connection.vendor != "sqlite":
        pytest.skip("the embedded default's plan")
    from catalog.models import PhashPiece

    for n in range(PHASH_PIECES):
        roots = ImageAsset.objects.alias(piece=PhashPiece(n)).filter(piece__in=["abcd", "0000"], cluster_id=F("id"))
        sql, params = roots.values_list("id").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
        assert f"USING INDEX catalog_asset_phash_piece_{n}" in plan, plan
