"""Stress: three first Runs of sitemaps of different advertisers that share pictures, started at once on two real
worker processes (Redis, PostgreSQL), while a reviewer posts fixes through the API. Afterwards nothing deadlocked,
every Run succeeded with exact counters, every fix is in effect in every reader (the API's image, the grid's
source=fix filter over the stored tags, the rule in SQL), and `refresh_effective_tags` finds nothing to rewrite:
the stored tags equal the rule however the writers interleaved. Several rounds, since interleavings vary."""

import io
import random
from http.server import BaseHTTPRequestHandler
from xml.sax.saxutils import escape

import pytest
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from catalog.inventory_server import InventoryServer
from catalog.inventory_server.images import make_jpeg
from catalog.models import ImageAsset, Placement, Run, Task
from catalog.services.runs import run_start
from classifier.models import Classification
from reviews.effective import Source, annotate_effective
from reviews.expressions import active_heads
from reviews.grid import GridFilters, sitemap_placements
from reviews.models import EffectiveTag, ManualFix
from tests.factories import SitemapFactory, UserFactory
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PICTURES = 100  # distinct pictures; 20 more URLs serve copies of the first 20 (a CDN's second name for a file)
COPIES = 20
PER_SITEMAP = 72
PER_LISTING = 4
FIXED_TASKS = (Task.IMAGE_TYPE, Task.INTENT, Task.SENSITIVE)
LABELS = {
    Task.IMAGE_TYPE: ("Dealer", "Stock", "Placeholder"),
    Task.INTENT: ("No Shopping Intent", "Home & Garden"),
    Task.SENSITIVE: ("not sensitive", "sensitive"),
}
WORKER_ENV = {"CLASSIFY_BATCH_SIZE": "6", "RUN_PROGRESS_SECONDS": "0.3"}


def sitemap_handler(server: InventoryServer, image_indexes: list[int]):
    """A route serving an image sitemap of these images of the server, PER_LISTING a listing."""

    def handle(request: BaseHTTPRequestHandler) -> None:
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
            ' xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">\n'
        ]
        for start in range(0, len(image_indexes), PER_LISTING):
            listing = f"{server.base_url}/cars/{image_indexes[start]}-{start}"
            parts.append(f"<url><loc>{escape(listing)}</loc>")
            parts.extend(
                f"<image:image><image:loc>{escape(server.image_url(i))}</image:loc></image:image>"
                for i in image_indexes[start : start + PER_LISTING]
            )
            parts.append("</url>\n")
        body = "".join([*parts, "</urlset>\n"]).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/xml")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handle


def problems(workers) -> str:
    """The workers' log lines about a deadlock or an error."""
    lines = [line for worker in workers for line in worker.output().splitlines()]
    return "\n".join(line for line in lines if "deadlock" in line.lower() or "ERROR/" in line)


def deadlocks_so_far() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def post_fixes(client: APIClient, rng: random.Random, posted: list[int]) -> None:
    """A few fixes on images that have a picture already (as a reviewer on the grid would), through the API."""
    ready = list(Placement.objects.filter(asset__isnull=False).values_list("id", flat=True)[:400])
    for placement_id in rng.sample(ready, min(3, len(ready))):
        task = rng.choice(FIXED_TASKS)
        response = client.post(
            f"/api/images/{placement_id}/fixes/", {"task": task, "label": rng.choice(LABELS[task])}, format="json"
        )
        assert response.status_code == 201, response.content
        posted.append(response.json()["id"])


@pytest.mark.parametrize("round_", range(3))
def test_overlapping_runs_with_fixes_never_deadlock_and_leave_the_stored_tags_equal_to_the_rule(worker_factory, round_):
    call_command("register_starter_models")
    pictures = [make_jpeg(1000 * round_ + i, width=320, height=240) for i in range(PICTURES)]
    rng = random.Random(round_)
    staff = UserFactory(is_staff=True)
    client = APIClient()
    client.force_authenticate(staff)
    deadlocks_before = deadlocks_so_far()

    with InventoryServer(images=pictures + pictures[:COPIES]) as server:
        indexes = [rng.sample(range(PICTURES + COPIES), PER_SITEMAP) for _ in range(3)]
        sitemaps = []
        for n, chosen in enumerate(indexes):
            server.add_route(f"/shop{n}.xml", sitemap_handler(server, chosen))
            sitemaps.append(SitemapFactory(url=f"{server.base_url}/shop{n}.xml"))
        workers = [worker_factory(**WORKER_ENV), worker_factory(**WORKER_ENV)]
        runs = [run_start(sitemap=sitemap) for sitemap in sitemaps]

        posted: list[int] = []

        def finished_while_fixing() -> bool:
            post_fixes(client, rng, posted)
            return not Run.objects.filter(pk__in=[run.pk for run in runs], status__in=Run.ACTIVE_STATUSES).exists()

        try:
            wait_for(finished_while_fixing, timeout=150, what="the three Runs", worker=workers[0])
        except AssertionError as exc:  # a Run stalled: a lost batch waits for its lease; say why
            raise AssertionError(f"{exc}\n{problems(workers)}") from None
        post_fixes(client, rng, posted)  # and one more after the last Run finished

    assert not problems(workers)
    for run in runs:
        run.refresh_from_db()
        assert (run.status, run.step) == (Run.Status.SUCCEEDED, Run.Step.DONE), run.counters()
        assert (run.urls, run.failed, run.not_modified) == (PER_SITEMAP, 0, 0), run.counters()
        assert run.downloaded + run.cache_hits == run.urls, run.counters()
    distinct = len({index % PICTURES for chosen in indexes for index in chosen})
    # Each distinct picture was downloaded once across the three Runs, and stored once.
    assert sum(run.downloaded for run in runs) == distinct == ImageAsset.objects.count()
    assert Placement.objects.filter(status=Placement.Status.OK).count() == 3 * PER_SITEMAP
    ok = Classification.objects.filter(status=Classification.Status.OK)
    assert ok.count() == Classification.objects.count() == distinct * len(Task.values)  # none missing, none twice
    assert len(posted) >= 6

    # Every fix in effect (the latest of its scope) shows in every reader, on every placement of its scope.
    heads = active_heads()
    latest: dict[tuple[int, int, str], ManualFix] = {}
    for fix in ManualFix.objects.order_by("created_at", "id"):
        latest[(fix.advertiser_id, fix.asset_id, fix.task)] = fix
    for (advertiser_id, asset_id, task), fix in latest.items():
        placements = Placement.objects.filter(listing__sitemap__advertiser_id=advertiser_id, asset_id=asset_id)
        assert placements.exists()
        for placement in placements.select_related("listing__sitemap"):
            shown = client.get(f"/api/images/{placement.pk}/").json()["tags"][task]
            assert (shown["label"], shown["source"], shown["fix_id"]) == (fix.new_label, Source.FIX, fix.pk)
            by_rule = annotate_effective(Placement.objects.filter(pk=placement.pk), [task], heads).get()
            assert (getattr(by_rule, f"{task}_label"), getattr(by_rule, f"{task}_source")) == (fix.new_label, "fix")
            grid = sitemap_placements(
                sitemap=placement.listing.sitemap, filters=GridFilters.from_params({"task": task, "source": "fix"})
            )
            assert grid.filter(pk=placement.pk).exists(), (placement.pk, task, fix.new_label)
            stored = EffectiveTag.objects.get(placement=placement, task=task)
            assert (stored.label, stored.source) == (fix.new_label, Source.FIX)

    # The stored tags equal the rule: a refresh of everything rewrites nothing, listing checks included.
    columns = [field.attname for field in EffectiveTag._meta.concrete_fields if field.attname != "id"]
    before = list(EffectiveTag.objects.order_by("placement_id", "task").values_list(*columns))
    out = io.StringIO()
    call_command("refresh_effective_tags", stdout=out)
    assert out.getvalue().startswith("0 stored tags rewritten"), out.getvalue()
    assert list(EffectiveTag.objects.order_by("placement_id", "task").values_list(*columns)) == before
    assert len(before) == 3 * PER_SITEMAP * len(Task.values)
    assert deadlocks_so_far() == deadlocks_before
