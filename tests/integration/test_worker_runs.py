"""Runs through a real Celery worker (Redis broker, PostgreSQL) against a real local HTTP server."""

import pytest

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import ImageAsset, Placement, Run, Sitemap
from catalog.services.runs import run_start
from tests.factories import SitemapFactory
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def finished(run):
    run.refresh_from_db()
    return run.status not in Run.ACTIVE_STATUSES


def test_worker_runs_a_sitemap_and_records_every_kind_of_failure(worker_factory):
    worker = worker_factory(FETCH_READ_TIMEOUT="0.5", RUN_RETRY_BACKOFF="0.05")
    with InventoryServer(images=make_inventory_images(6, seed=3), images_per_listing=3) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run = run_start(sitemap=sitemap)
        wait_for(lambda: finished(run), timeout=90, what="the first run", worker=worker)
        assert (run.status, run.urls, run.downloaded) == ("succeeded", 6, 6), run.counters()

        rerun = run_start(sitemap=sitemap)
        wait_for(lambda: finished(rerun), timeout=60, what="the re-run", worker=worker)
        assert (rerun.status, rerun.not_modified, rerun.downloaded) == ("succeeded", 6, 0)

        names = ["404.jpg", "slow.jpg", "redirect.jpg", "html.jpg", "bomb.png", "truncated.jpg"]
        feed = {
            "format": "imagetagger-feed/1",
            "listings": [
                {
                    "external_id": name,
                    "url": f"{server.base_url}/cars/{n}",
                    "images": [f"{server.base_url}/special/{name}"],
                }
                for n, name in enumerate(names)
            ],
        }
        feed_sitemap = SitemapFactory(advertiser=sitemap.advertiser, kind=Sitemap.Kind.FEED, url="")
        failing = run_start(sitemap=feed_sitemap, feed_document=feed, trigger=Run.Trigger.SCRAPE)
        wait_for(lambda: finished(failing), timeout=60, what="the failing run", worker=worker)

    assert failing.status == "partial"
    assert failing.failure_reasons == {
        "http_404": 1, "timeout": 1, "not_image": 1, "too_many_pixels": 1, "corrupt_image": 1
    }  # fmt: skip
    assert failing.cache_hits == 1  # the redirect leads to an image already known


def test_a_worker_killed_mid_run_loses_nothing(worker_factory):
    images = make_inventory_images(60, seed=11)
    # A short lease: should the dead worker look alive (its pid reused), the new worker resumes the Run anyway.
    slow = {"RUN_FETCH_PER_HOST": "2", "RUN_FETCH_CONCURRENCY": "2", "RUN_LEASE_SECONDS": "20"}
    first = worker_factory(**slow)
    with InventoryServer(images=images, images_per_listing=6, delay=0.15) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run = run_start(sitemap=sitemap)

        def some_progress():
            return Placement.objects.filter(last_run=run).count() >= 10

        wait_for(some_progress, timeout=60, what="the run to get going", worker=first)
        first.kill()
        run.refresh_from_db()
        assert run.status == "running"
        handled_before = Placement.objects.filter(last_run=run).count()
        assert 10 <= handled_before < 60

        second = worker_factory(**slow)
        wait_for(lambda: finished(run), timeout=120, what="the run to complete on the new worker", worker=second)

    assert run.status == "succeeded", run.counters()
    assert run.attempts == 2
    assert run.urls == 60
    assert run.downloaded + run.cache_hits == 60
    assert ImageAsset.objects.count() == 60
    assert Placement.objects.count() == 60
    assert set(Placement.objects.values_list("status", flat=True)) == {"ok"}
    # Content-addressed storage: no second copy of any file.
    originals = {asset.original.name for asset in ImageAsset.objects.all()}
    assert len(originals) == 60


def test_the_worker_classifies_in_batches_on_the_inference_queue_and_finishes_once(worker_factory):
    from django.core.management import call_command

    from classifier.models import Classification

    call_command("register_starter_models")
    worker = worker_factory(CLASSIFY_BATCH_SIZE="4", RUN_CLASSIFY_IN_FETCH="0")
    with InventoryServer(images=make_inventory_images(10, seed=21), images_per_listing=5) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run = run_start(sitemap=sitemap)
        wait_for(lambda: finished(run), timeout=120, what="the classified run", worker=worker)

    assert (run.status, run.urls, run.downloaded, run.classified) == ("succeeded", 10, 10, 10), run.counters()
    assert run.step == "done"
    results = Classification.objects.filter(status="ok")
    assert results.count() == 10 * 4  # image_type, color, intent, sensitive for each image
    assert set(results.values_list("task", flat=True)) == {"image_type", "color", "intent", "sensitive"}
    assert set(results.filter(task="color").values_list("crop_source", flat=True)) <= {"detector", "no_vehicle"}
