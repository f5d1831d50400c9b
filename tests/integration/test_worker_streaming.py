"""Real Celery workers (Redis, PostgreSQL): new images are classified on the inference queue while the Run that
brings them in is still fetching. One URL of the inventory answers only when the test lets it, so the fetch step
cannot end before the test has seen classifications: the overlap is shown without any timing."""

import threading
from http.server import BaseHTTPRequestHandler

import pytest
from django.core.management import call_command

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import ImageAsset, Placement, Run, Sitemap
from catalog.services.runs import run_start
from classifier.models import Classification
from tests.factories import SitemapFactory
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = 4  # the starter models: image_type, color, intent, sensitive


def test_new_images_are_classified_by_another_worker_while_the_run_still_fetches(worker_factory):
    call_command("register_starter_models")
    images = make_inventory_images(10, seed=51)
    gate = threading.Event()

    def gated(request: BaseHTTPRequestHandler) -> None:
        gate.wait(timeout=150)  # never forever: a failing test still ends
        request.send_response(200)
        request.send_header("Content-Type", "image/jpeg")
        request.send_header("Content-Length", str(len(images[9])))
        request.end_headers()
        request.wfile.write(images[9])

    env = {"CLASSIFY_BATCH_SIZE": "2", "FETCH_READ_TIMEOUT": "160", "FETCH_DEADLINE": "180"}
    env["RUN_CLASSIFY_IN_FETCH"] = "0"  # the inference queue's path: batches during the fetch
    with InventoryServer(images=images[:9], images_per_listing=3) as server:
        server.add_route("/gate.jpg", gated)
        urls = [server.image_url(i) for i in range(9)] + [f"{server.base_url}/gate.jpg"]
        feed = {
            "format": "imagetagger-feed/1",
            "listings": [
                {"external_id": f"car-{n}", "url": f"{server.base_url}/cars/{n}", "images": urls[n * 2 : n * 2 + 2]}
                for n in range(5)
            ],
        }
        run = run_start(sitemap=SitemapFactory(kind=Sitemap.Kind.FEED, url=""), feed_document=feed)
        fetching = worker_factory(**env)  # takes the Run: its only process is busy with it until the end

        def in_fetch_step() -> bool:
            run.refresh_from_db()
            return run.step == Run.Step.FETCH

        wait_for(in_fetch_step, timeout=90, what="the Run to start fetching", worker=fetching)
        classifying = worker_factory(**env)  # takes the batches the fetching worker sends

        def classified_while_fetching() -> bool:
            return Classification.objects.filter(status="ok").exists()

        wait_for(classified_while_fetching, timeout=150, what="classifications during the fetch", worker=classifying)
        run.refresh_from_db()
        # The gate is closed: the Run cannot have left its fetch step, and the batches done so far did not finish it.
        assert (run.status, run.step) == (Run.Status.RUNNING, Run.Step.FETCH), run.counters()
        classified_early = Classification.objects.filter(status="ok").values("asset_id").distinct().count()
        assert 1 <= classified_early <= 9
        gate.set()

        def finished() -> bool:
            run.refresh_from_db()
            return run.status not in Run.ACTIVE_STATUSES

        wait_for(finished, timeout=150, what="the Run to finish", worker=fetching)

    counters = (run.status, run.step, run.urls, run.downloaded, run.cache_hits, run.failed, run.classified)
    assert counters == ("succeeded", "done", 10, 10, 0, 0, 10), run.counters()
    assert (ImageAsset.objects.count(), Placement.objects.count()) == (10, 10)
    assert Classification.objects.filter(status="ok").count() == 10 * TASKS  # no duplicate, nothing missing
    assert Classification.objects.count() == 10 * TASKS
