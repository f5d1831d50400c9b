"""The CDN-rename flag: a cold Run (the sitemap's first, which could revalidate nothing) is no baseline for
"fetched again", so the first rename after one unchanged re-run is flagged."""

import pytest
from django.utils import timezone

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import Run
from catalog.services.runs import run_execute, run_start
from reviews import health
from reviews.health import flags
from reviews.health.flags import RunFigures
from tests.factories import RunFactory, SitemapFactory

COLD = RunFigures(urls=10, downloaded=10, cold=True)
UNCHANGED = RunFigures(urls=10, not_modified=10)
RENAMED = RunFigures(urls=10, cache_hits=10)


def test_a_cold_run_is_no_baseline_for_fetched_again():
    flagged = flags.cdn_changed(RENAMED, [UNCHANGED, COLD])
    assert flagged is not None
    assert (flagged["fetched"], flagged["previous_not_modified"], flagged["previous_runs"]) == (1.0, 1.0, 2)
    assert "where the previous Run got 100% 'not modified'" in flagged["message"]
    # Counted as a baseline (the bug), the cold Run made it exactly 50%, not "more than half".
    assert flags.cdn_changed(RENAMED, [UNCHANGED, RunFigures(urls=10, downloaded=10)]) is None


def test_with_only_cold_runs_before_there_is_nothing_to_be_fetched_again_against():
    never_revalidated = [RunFigures(urls=10, cache_hits=10, cold=True), COLD]
    assert flags.cdn_changed(RENAMED, never_revalidated) is None
    # A CDN that never revalidates and then re-encodes: the downloads jump still counts every previous Run
    # (0% and 100% before: 50%, then 90%).
    jumped = flags.cdn_changed(RunFigures(urls=10, downloaded=9, cache_hits=1), never_revalidated)
    assert jumped is not None
    assert jumped["message"].startswith("downloads jumped from 50% to 90%")


def finished_run(sitemap, **counters):
    return RunFactory(
        sitemap=sitemap, step=Run.Step.DONE, status=Run.Status.SUCCEEDED, finished_at=timezone.now(), **counters
    )


@pytest.mark.django_db
def test_a_previous_run_is_cold_until_a_run_of_its_sitemap_gets_a_not_modified():
    sitemap = SitemapFactory()
    finished_run(sitemap, urls=10, downloaded=10)  # the first Run: cold
    finished_run(sitemap, urls=10, cache_hits=10)  # the CDN sent no validators yet: cold too
    finished_run(sitemap, urls=10, not_modified=10)
    finished_run(sitemap, urls=10, cache_hits=10)  # a rename: not cold, it counts as 0% not modified
    finished_run(sitemap, urls=10, not_modified=10)
    run = finished_run(sitemap, urls=10, cache_hits=10)

    (flagged,) = health.run_health_record(run=run)

    # Baseline: the two not-modified Runs and the rename between them (67%), not the two cold Runs.
    assert (flagged["code"], flagged["previous_not_modified"], flagged["previous_runs"]) == ("cdn_changed", 0.6667, 5)
    assert "where the previous 3 Runs got 67% 'not modified'" in flagged["message"]


@pytest.mark.django_db(transaction=True)
def test_the_first_rename_after_a_cold_run_and_one_unchanged_rerun_is_flagged():
    def run_sync(sitemap):
        run = run_start(sitemap=sitemap, enqueue=False)
        run_execute(run_id=run.pk, inline=True)
        run.refresh_from_db()
        return run

    with InventoryServer(images=make_inventory_images(4, seed=23), images_per_listing=2) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        cold, unchanged = run_sync(sitemap), run_sync(sitemap)
        server.rename()
        renamed = run_sync(sitemap)

    assert (cold.downloaded, unchanged.not_modified, renamed.cache_hits) == (4, 4, 4)
    assert [flag["code"] for flag in cold.health_flags + unchanged.health_flags] == []
    assert [flag["code"] for flag in renamed.health_flags] == ["cdn_changed"]
    assert renamed.health_flags[0]["message"].startswith("100% of the URLs were fetched again")
