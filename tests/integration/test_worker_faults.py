"""A worker killed (SIGKILL, its pool with it) in the middle of a Run's classify step, a live worker started right
after: the batch it was classifying is never acknowledged (Redis keeps it aside until the visibility timeout, hours
away), the queued ones go to the live worker, and the Run must not wait for a lease period to get the lost one."""

from __future__ import annotations

import shutil
import time

import pytest
from django.core.management import call_command

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.services.runs import run_start
from catalog.tasks import run_execute_task
from tests.factories import SitemapFactory
from tests.integration.conftest import wait_for
from tests.integration.own_redis import own_redis  # noqa: F401 - the fixture
from tests.integration.test_broker_faults import RECOVERY_BOUND, _assert_complete_and_exact, _state, finished

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def test_a_worker_killed_mid_classify_another_finishes_the_run_within_a_minute(
    worker_factory,
    own_redis,  # noqa: F811
):
    """The lease and the checks as deployed: no setting is shortened for the test."""
    call_command("register_starter_models")
    env = {"CELERY_BROKER_URL": own_redis.url, "CLASSIFY_BATCH_SIZE": "2", "RUN_CLASSIFY_IN_FETCH": "0"}
    doomed = worker_factory(**env)
    images = 40
    with InventoryServer(images=make_inventory_images(images, seed=53), images_per_listing=8) as server:
        run = run_start(sitemap=SitemapFactory(url=server.sitemap_url), enqueue=False)
        own_redis.send(run_execute_task, run.pk)

        def mid_classify():
            return _state(run).step == "classify" and run.classified >= 4 and own_redis.unacknowledged()

        wait_for(mid_classify, timeout=120, what="a batch of the classify step under way", worker=doomed)
        doomed.kill()
        killed = time.monotonic()
        lost = own_redis.unacknowledged()
        run.refresh_from_db()
        assert lost >= 1, "the worker was killed between two batches: nothing was lost"
        assert run.classified < images, "classify ended before the worker was killed"
        survivor = worker_factory(**env)
        wait_for(lambda: finished(run), timeout=RECOVERY_BOUND, what="the run to finish", worker=survivor)
        recovered = time.monotonic() - killed

    print(f"\nRun finished {recovered:.1f}s after its worker was killed mid-classify ({lost} task lost)")  # noqa: T201
    _assert_complete_and_exact(run, images)
