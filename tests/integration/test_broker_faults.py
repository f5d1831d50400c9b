"""Broker faults with a real worker: Redis killed at the fetch-to-classify hand-over, and restarted (empty) during
classify with no beat. Each test runs its own throw-away Redis (never the shared one), stops and starts it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import ImageAsset, Placement, Run
from catalog.services.runs import run_start
from catalog.tasks import run_execute_task
from classifier.models import Classification
from config.celery_app import app
from tests.factories import SitemapFactory
from tests.integration.conftest import wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]

TASKS = 4  # image_type, color, intent, sensitive


def _free_port(preferred: int = 6391) -> int:
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError("no free port")


class OwnRedis:
    """A Redis of this test alone: no persistence, so a restart loses every queued and unacknowledged task."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def _cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=10, check=False
        )

    def start(self) -> OwnRedis:
        subprocess.run(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "yes", "--dir", str(self.directory),
             "--pidfile", str(self.directory / "redis.pid"), "--logfile", str(self.directory / "redis.log")],
            check=True, timeout=10,
        )  # fmt: skip
        wait_for(lambda: self._cli("ping").stdout.strip() == "PONG", timeout=10, what="redis to start")
        return self

    def stop(self) -> None:
        self._cli("shutdown", "nosave")
        wait_for(lambda: self._cli("ping").returncode != 0, timeout=10, what="redis to stop")

    def send(self, task, *args) -> None:
        with app.connection_for_write(self.url) as connection:
            task.apply_async(args, connection=connection)


@pytest.fixture
def own_redis(tmp_path):
    directory = tmp_path / "redis"
    directory.mkdir()
    redis = OwnRedis(directory).start()
    yield redis
    if redis._cli("ping").returncode == 0:
        redis.stop()


def _state(run: Run) -> Run:
    run.refresh_from_db()
    return run


def finished(run: Run) -> bool:
    return _state(run).status not in Run.ACTIVE_STATUSES


def _assert_complete_and_exact(run: Run, images: int) -> None:
    assert (run.status, run.step, run.urls) == ("succeeded", "done", images), run.counters()
    assert (run.downloaded, run.cache_hits, run.not_modified, run.failed) == (images, 0, 0, 0), run.counters()
    assert run.classified == images, run.counters()
    assert ImageAsset.objects.count() == images
    assert Placement.objects.filter(status="ok").count() == images
    results = Classification.objects.filter(status="ok")
    assert results.count() == images * TASKS  # one row per (asset, model, task): no duplicate, nothing missing
    assert not Classification.objects.exclude(status="ok").exists()


def test_a_broker_down_at_the_hand_over_waits_and_the_run_resumes_when_it_is_back(worker_factory, own_redis):
    call_command("register_starter_models")
    worker = worker_factory(
        CELERY_BROKER_URL=own_redis.url,
        RUN_FETCH_CONCURRENCY="2",
        RUN_FETCH_PER_HOST="2",
        CLASSIFY_BATCH_SIZE="4",
        RUN_HANDOVER_RETRIES="1",
        RUN_LEASE_CHECK_SECONDS="1",
    )
    images = 20
    with InventoryServer(images=make_inventory_images(images, seed=31), images_per_listing=5, delay=0.3) as server:
        run = run_start(sitemap=SitemapFactory(url=server.sitemap_url), enqueue=False)
        own_redis.send(run_execute_task, run.pk)
        wait_for(
            lambda: Placement.objects.filter(last_run=run).count() >= 2, timeout=60, what="the fetch", worker=worker
        )
        own_redis.stop()  # while the worker fetches: the hand-over finds the broker down
        assert _state(run).step == "fetch", "the fetch step ended before the broker went down"

        def handed_over_to_nobody():
            return _state(run).step == "classify" and run.heartbeat_at is None

        wait_for(handed_over_to_nobody, timeout=90, what="the hand-over to give up", worker=worker)
        time.sleep(3)  # the lease checks go on meanwhile: still nothing to send to
        run.refresh_from_db()
        assert (run.status, run.step, run.error) == ("running", "classify", ""), run.counters()
        assert run.downloaded == images
        assert not Classification.objects.exists()

        own_redis.start()
        wait_for(lambda: finished(run), timeout=120, what="the run to resume and finish", worker=worker)

    _assert_complete_and_exact(run, images)
    assert run.attempts == 2  # the fetch, then the re-claim of the classify step by the lease check
    assert "the broker is down at the hand-over" in worker.output()


def test_redis_restarted_during_classify_loses_the_batches_and_the_lease_check_resumes_without_beat(
    worker_factory, own_redis
):
    call_command("register_starter_models")
    worker = worker_factory(
        CELERY_BROKER_URL=own_redis.url,
        CLASSIFY_BATCH_SIZE="1",
        RUN_LEASE_SECONDS="6",
        RUN_LEASE_CHECK_SECONDS="1",
    )
    images = 40
    with InventoryServer(images=make_inventory_images(images, seed=41), images_per_listing=8) as server:
        run = run_start(sitemap=SitemapFactory(url=server.sitemap_url), enqueue=False)
        own_redis.send(run_execute_task, run.pk)

        def classifying():
            return _state(run).step == "classify" and run.classified >= 2

        wait_for(classifying, timeout=120, what="the classify step", worker=worker)
        own_redis.stop()  # the queued batches and the unacknowledged one go with it
        run.refresh_from_db()
        assert run.classified < images, "classify ended before the broker restarted"
        own_redis.start()
        # No beat here: only the workers' own lease check can bring the Run back.
        wait_for(lambda: finished(run), timeout=120, what="the run to resume and finish", worker=worker)

    _assert_complete_and_exact(run, images)
    assert run.attempts == 2
