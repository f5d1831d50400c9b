"""A worker's memory, measured as a container's limit counts it: the PSS (shared pages counted once) of its whole
process tree (the parent, the two pool processes and the Run's fetch processes), sampled every 100 ms from /proc
while a real Celery worker (Redis, PostgreSQL) runs a sitemap.

The bound, WORKER_PEAK_PSS_MB, is issue 18's: 500 MB in any Run, floods included. Before the decode was bounded
across the worker's processes, the flood of 17 files took the tree to 919 MB (each fetch process held a 32 MP
decode, and the inference process decoded the same files again at full size). Each test prints its peak, for the
closing note.
"""

import re

import pytest
from django.core.management import call_command

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import ImageAsset, Run
from catalog.services.runs import run_start
from core.processes import process_tree, pss_kb
from tests.catalog.floods import TreePssSampler, mixed_floods
from tests.factories import SitemapFactory
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

WORKER_PEAK_PSS_MB = 500
POOL = 2  # pool processes, as the README's worker has on a 2-core machine


def _ready(worker) -> bool:
    """The worker is up and every pool process has started (what an idle worker weighs)."""
    assert worker.process is not None
    return bool(re.search(r"@\S+ ready\.", worker.output())) and len(process_tree(worker.process.pid)) > POOL


def _run_measured(worker, sitemap, *, timeout: float) -> tuple[Run, TreePssSampler, float]:
    wait_for(lambda: _ready(worker), timeout=60, what="the worker to start", worker=worker)
    idle_mb = sum(pss_kb(pid) for pid in process_tree(worker.process.pid)) / 1024
    with TreePssSampler(worker.process.pid, interval=0.1) as sampler:
        run = run_start(sitemap=sitemap)

        def finished() -> bool:
            run.refresh_from_db()
            return run.status not in Run.ACTIVE_STATUSES

        wait_for(finished, timeout=timeout, what="the Run to finish", worker=worker)
    return run, sampler, idle_mb


def _report(what: str, sampler: TreePssSampler, idle_mb: float) -> str:
    # process_tree lists the worker, then its pool processes, then the fetch processes of the one carrying the Run.
    processes = ", ".join(f"{pid}: {kb / 1024:.0f}" for pid, kb in sampler.peak_processes)
    return (
        f"{what}: worker tree peak PSS {sampler.peak_mb:.0f} MB, {sampler.alone_peak_mb:.0f} MB as if alone on the"
        f" machine (bound {WORKER_PEAK_PSS_MB} MB; idle {idle_mb:.0f} MB;"
        f" {sampler.samples} samples; MB per process at the peak: {processes})"
    )


def test_a_flood_of_big_decodes_keeps_the_worker_under_the_bound(worker_factory):
    call_command("register_starter_models")
    floods = mixed_floods(17)  # PNG and GIF of 32 MP, TIFF and WebP of 16 MP (64 MB decoded whole), 40-600 KB
    worker = worker_factory(concurrency=POOL, RUN_FETCH_PROCESSES=str(POOL))
    with InventoryServer(images=floods, images_per_listing=4) as server:
        run, sampler, idle_mb = _run_measured(worker, SitemapFactory(url=server.sitemap_url), timeout=400)
    report = _report("flood of 17 images of 16-32 MP", sampler, idle_mb)
    print(report)  # noqa: T201 - the figure the closing note quotes
    assert (run.status, run.downloaded, run.failed, run.classified) == ("succeeded", 17, 0, 17), run.counters()
    assert ImageAsset.objects.count() == 17
    assert sampler.peak_mb < WORKER_PEAK_PSS_MB, report


def test_a_first_run_of_ordinary_photos_keeps_the_worker_under_the_bound(worker_factory, tmp_path_factory):
    call_command("register_starter_models")
    photos = make_inventory_images(300, seed=18, cache_dir=tmp_path_factory.getbasetemp() / "photos")
    worker = worker_factory(concurrency=POOL, RUN_FETCH_PROCESSES=str(POOL))
    with InventoryServer(images=photos, images_per_listing=10) as server:
        run, sampler, idle_mb = _run_measured(worker, SitemapFactory(url=server.sitemap_url), timeout=400)
    report = _report("first Run of 300 photos", sampler, idle_mb)
    print(report)  # noqa: T201
    assert (run.status, run.downloaded, run.classified) == ("succeeded", 300, 300), run.counters()
    assert sampler.peak_mb < WORKER_PEAK_PSS_MB, report
