"""The lease of a Run: renewed from a thread of the process carrying it, whatever that process is doing, so that a
short lease (a killed worker's Run resumed within a minute) never takes a Run from a live worker."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import Run
from catalog.services import runs
from tests.factories import SitemapFactory

pytestmark = pytest.mark.django_db(transaction=True)  # the heartbeat thread has its own connection

LONG_STEP_SECONDS = 2.5
seen: list[bool] = []


def silent_step(*, run: Run) -> None:
    """A step after the fetch that takes longer than the lease and ticks no progress (clustering a large sitemap)."""
    deadline = time.monotonic() + LONG_STEP_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.25)
        seen.append(runs.run_lease_expired(Run.objects.get(pk=run.pk)))


def test_a_step_longer_than_the_lease_keeps_it(settings):
    settings.RUN_HEARTBEAT_SECONDS = 0.2
    settings.RUN_LEASE_SECONDS = 1
    settings.RUN_AFTER_FETCH = [f"{__name__}.silent_step"]
    seen.clear()
    with InventoryServer(images=make_inventory_images(2, seed=7), images_per_listing=2) as server:
        run = runs.run_start(sitemap=SitemapFactory(url=server.sitemap_url), enqueue=False)
        runs.run_execute(run_id=run.pk, inline=True)

    run.refresh_from_db()
    assert (run.status, run.attempts) == ("succeeded", 1)
    assert len(seen) >= 8
    assert not any(seen), "the lease ran out while its worker was busy"


def test_the_heartbeat_renews_only_a_run_its_worker_still_holds(settings):
    settings.RUN_HEARTBEAT_SECONDS = 0.1
    long_ago = timezone.now() - timedelta(hours=1)
    run = runs.run_start(sitemap=SitemapFactory(), enqueue=False)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING, worker="other:1", heartbeat_at=long_ago)

    with runs.run_heartbeat(run_id=run.pk, worker="gone:2"):
        time.sleep(0.5)
    run.refresh_from_db()
    assert run.heartbeat_at == long_ago  # taken over by another worker: not this one's to renew

    with runs.run_heartbeat(run_id=run.pk, worker="other:1"):
        time.sleep(0.5)
    run.refresh_from_db()
    assert run.heartbeat_at > timezone.now() - timedelta(seconds=1)
