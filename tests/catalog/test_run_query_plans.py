"""A Run's cost follows its own sitemap, not the whole database: with another advertiser's results in the
tables, the plans of a Run's queries use indexes, and an unchanged re-run makes the same queries."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from benchmarks.loads import background_count, background_load
from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import ImageAsset, Run
from catalog.services.runs import run_execute, run_start
from classifier.services.inference import active_models, needs_classification
from classifier.services.pipeline import _live_asset_ids
from tests.factories import SitemapFactory

pytestmark = pytest.mark.django_db(transaction=True)

# Tables that grow with every advertiser: a Run may read them only through an index.
BIG_TABLES = ("classifier_classification", "catalog_imageasset", "catalog_placement")


@pytest.fixture(scope="module")
def images():
    return make_inventory_images(12, seed=11)


@pytest.fixture
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("query plans are checked on PostgreSQL (the production database)")


def run_sync(sitemap) -> Run:
    run = run_start(sitemap=sitemap, enqueue=False)
    run_execute(run_id=run.pk, inline=True)
    run.refresh_from_db()
    return run


def analyze() -> None:
    with connection.cursor() as cursor:
        for table in BIG_TABLES:
            cursor.execute(f"ANALYZE {table}")


def explain(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


def reads(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]


def seq_scans(plan: str) -> set[str]:
    return {table for table in re.findall(r"Seq Scan on (\w+)", plan) if table in BIG_TABLES}


def test_needs_classification_probes_the_unique_key_of_classifications(images, register_tiny, postgres_only):
    register_tiny()  # color and sensitive heads, active
    with InventoryServer(images=images, images_per_listing=4) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run = run_sync(sitemap)
    assert run.classified == 12
    background_load(classifications=20_000)
    analyze()
    active = active_models(run.sitemap.tasks_enabled)

    pending = ImageAsset.objects.filter(needs_classification(_live_asset_ids(run), active, since=run.started_at))
    plan = pending.explain()

    assert "Seq Scan on classifier_classification" not in plan, plan
    # One probe per asset of the sitemap, by an index on the asset (the unique key or the foreign key's).
    assert re.search(r"Index Cond: \(+asset_id = catalog_imageasset\.id", plan), plan
    assert list(pending) == []


def test_a_run_reads_the_big_tables_through_indexes_only(images, register_tiny, postgres_only):
    register_tiny()
    background_load(classifications=20_000)
    analyze()
    with InventoryServer(images=images, images_per_listing=4) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        with CaptureQueriesContext(connection) as first_queries:
            first = run_sync(sitemap)
        with CaptureQueriesContext(connection) as rerun_queries:
            rerun = run_sync(sitemap)
    assert (first.status, first.downloaded, first.classified) == ("succeeded", 12, 12)
    assert (rerun.status, rerun.not_modified, rerun.classified) == ("succeeded", 12, 0)

    # Known and documented (catalog.services.clusters): clustering a Run's new assets reads every asset's pHash, or
    # looks pHash pieces up; which one depends on MAX(id), which earlier tests leave high on PostgreSQL. The lookups'
    # plans are checked where the table is big enough for them (tests/catalog/test_cluster_index.py).
    cluster_load = 'SELECT "catalog_imageasset"."id", "catalog_imageasset"."phash", "catalog_imageasset"."cluster_id"'
    big = [
        sql
        for sql in reads(first_queries) + reads(rerun_queries)
        if any(table in sql for table in BIG_TABLES)
        and not sql.startswith(cluster_load)
        and "WHERE SUBSTR(phash" not in sql
    ]
    assert len(big) > 10
    scans = {sql: seq_scans(explain(sql)) for sql in big}
    assert {sql: tables for sql, tables in scans.items() if tables} == {}


def test_an_unchanged_rerun_makes_as_many_queries_whatever_the_background(images, register_tiny):
    register_tiny()
    with InventoryServer(images=images, images_per_listing=4) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run_sync(sitemap)
        counts = []
        for background in (0, 4_000, 20_000):
            background_load(classifications=background)
            assert background_count() == background
            with CaptureQueriesContext(connection) as queries:
                rerun = run_sync(sitemap)
            assert (rerun.status, rerun.not_modified) == ("succeeded", 12)
            # The reads: the writes of the fetch step come in batches whose number depends on the threads' timing.
            counts.append(len(reads(queries)))
    assert counts[0] == counts[1] == counts[2], counts
