"""Cancelling a queued or running Run (manage.py cancel_run): the sitemap is free again, nothing half-written."""

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import ImageAsset, Run
from catalog.services.runs import RUN_CANCELLED, RunError, run_cancel, run_execute, run_finish, run_start
from tests.factories import RunFactory, SitemapFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def images():
    return make_inventory_images(8, seed=11)


def test_a_queued_run_blocks_run_sitemap_until_cancel_run_cancels_it(images, capsys):
    with InventoryServer(images=images, images_per_listing=4) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        stuck = run_start(sitemap=sitemap, enqueue=False)  # an API Run with no worker to take it

        with pytest.raises(CommandError, match=f"cancel it: manage.py cancel_run {stuck.pk}"):
            call_command("run_sitemap", str(sitemap.pk), "--sync")

        call_command("cancel_run", str(stuck.pk))
        assert f"Run {stuck.pk} of sitemap {sitemap.pk}: cancelled" in capsys.readouterr().out
        stuck.refresh_from_db()
        assert (stuck.status, stuck.error) == (Run.Status.FAILED, RUN_CANCELLED)
        assert stuck.finished_at is not None

        call_command("run_sitemap", str(sitemap.pk), "--sync")
    assert Run.objects.get(sitemap=sitemap, status=Run.Status.SUCCEEDED).downloaded == 8


def test_a_running_run_stops_at_its_next_tick_and_the_next_run_carries_on(images, settings):
    settings.RUN_PROGRESS_SECONDS = 0.0
    settings.RUN_FETCH_CONCURRENCY = 1
    with InventoryServer(images=images, images_per_listing=4) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run = run_start(sitemap=sitemap, enqueue=False)

        def cancel_once(current: Run) -> None:
            if current.done and Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).exists():
                run_cancel(run_id=run.pk)

        cancelled = run_execute(run_id=run.pk, inline=True, progress=cancel_once)
        assert cancelled is not None
        run.refresh_from_db()
        # The worker wrote nothing more on the Run: not finished as succeeded, not stepped past fetching.
        assert (run.status, run.error, run.step) == (Run.Status.FAILED, RUN_CANCELLED, Run.Step.FETCH)
        assert 0 < run.downloaded < 8

        again = run_start(sitemap=sitemap, enqueue=False)
        run_execute(run_id=again.pk, inline=True)
        again.refresh_from_db()
    assert again.status == Run.Status.SUCCEEDED
    assert again.urls == 8
    # What the cancelled Run brought in is reused (a URL in flight at the cancel may come back as a cache hit).
    assert again.downloaded + again.cache_hits + again.not_modified == 8
    assert again.not_modified >= run.downloaded
    assert ImageAsset.objects.count() == 8


def test_a_worker_finishing_a_cancelled_run_leaves_it_cancelled():
    run = RunFactory(status=Run.Status.RUNNING, started_at=timezone.now())
    run_cancel(run_id=run.pk)
    run_finish(run=run)  # the worker's stale copy still says running
    run.refresh_from_db()
    assert (run.status, run.error) == (Run.Status.FAILED, RUN_CANCELLED)


def test_only_a_queued_or_running_run_can_be_cancelled():
    done = RunFactory(status=Run.Status.SUCCEEDED)
    with pytest.raises(RunError, match="only a queued or running Run"):
        run_cancel(run_id=done.pk)
    with pytest.raises(CommandError, match="no run 999999"):
        call_command("cancel_run", "999999")
