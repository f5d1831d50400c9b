"""The stored effective tags follow every write a tag depends on: after each kind of write, through the real
services, views and APIs, the store holds exactly what the one rule (reviews.effective.annotate_effective) says for
every placement and task; and the grid's queries read it through its indexes."""

import io
import re
import threading
import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from benchmarks.loads import background_load
from catalog.inventory.types import Page
from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import ImageAsset, Listing, Membership, Placement, Run, Sitemap, Task
from catalog.services.clusters import clusters_rebuild
from catalog.services.runs import run_execute, run_start
from catalog.services.sync import inventory_sync
from classifier.models import Classification
from classifier.services.promotion import model_promote, model_rollback
from classifier.signals import classifications_written
from reviews.crosscheck import listing_check
from reviews.effective_store import (
    COLUMNS,
    COPIED,
    _listing_checks_statement,
    _upsert_statement,
    effective_tags_refresh,
    fresh_rows,
)
from reviews.expressions import active_heads
from reviews.grid import GridFilters, Paging, sitemap_grid
from reviews.models import EffectiveTag, ManualFix
from reviews.selectors import effective_tags
from reviews.services import manual_fix_revert, manual_fixes_apply, review_decision_record
from reviews.services.clusters import cluster_fix_apply
from reviews.services.fixes import Change
from tests.factories import MembershipFactory, SitemapFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def store_mismatches() -> list[str]:
    """Every difference between the store and the rule computed now (annotate_effective, over every placement and
    task; and its labels and sources in Python too), and between the stored listing checks and reviews.crosscheck's
    over the stored color tags: one line each."""
    heads = active_heads()
    expected = {}
    for task in Task.values:
        for row in fresh_rows(Placement.objects.all(), task, heads):
            expected[row["placement_id"], task] = {name: row[name] for name in COPIED}
    stored = {(row["placement_id"], row["task"]): row for row in EffectiveTag.objects.values(*COLUMNS)}
    lines = [f"no stored row for placement {pk}, {task}" for pk, task in sorted(expected.keys() - stored.keys())]
    lines += [f"a stored row of no placement: {pk}, {task}" for pk, task in sorted(stored.keys() - expected.keys())]
    for key in sorted(expected.keys() & stored.keys()):
        lines += [
            f"placement {key[0]}, {key[1]}: {name} is {stored[key][name]!r}, the rule says {value!r}"
            for name, value in expected[key].items()
            if stored[key][name] != value
        ]
    # The rule in Python (reviews.effective.decide, through the screens' selector) says the same labels and sources.
    placements = list(Placement.objects.select_related("listing__sitemap"))
    for pk, tags in effective_tags(placements).items():
        lines += [
            f"placement {pk}, {task}: stored {stored[pk, task]['label']!r} ({stored[pk, task]['source']}), "
            f"the rule in Python says {tag.label!r} ({tag.source})"
            for task, tag in tags.items()
            if (pk, task) in stored
            and (stored[pk, task]["label"], stored[pk, task]["source"]) != (tag.label, tag.source)
        ]
    colors = EffectiveTag.objects.filter(task=Task.COLOR, live=True)
    checks = EffectiveTag.objects.annotate(now=listing_check(colors)).values_list(
        "placement_id", "task", "listing_check", "now"
    )
    lines += [
        f"placement {pk}, {task}: listing check {kept!r}, the listing's colors say {now!r}"
        for pk, task, kept, now in checks
        if kept != now
    ]
    return lines


def store_statements(queries: CaptureQueriesContext) -> list[str]:
    """The statements captured, short of the transaction's and the writer lock's (one each, whatever the scope)."""
    bookkeeping = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT", "SELECT pg_advisory_xact_lock")
    return [query["sql"] for query in queries.captured_queries if not query["sql"].startswith(bookkeeping)]


def run_sync(sitemap: Sitemap) -> Run:
    run = run_start(sitemap=sitemap, enqueue=False)
    run_execute(run_id=run.pk, inline=True)
    run.refresh_from_db()
    return run


def stored(placement: Placement, task: str) -> EffectiveTag:
    return EffectiveTag.objects.get(placement=placement, task=task)


def jpeg(rgb: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def world(register_tiny):
    """A sitemap of 6 images in 3 listings, read, fetched and classified by a real Run (the tiny model tags color
    and sensitivity); the inventory server stays up for more Runs."""
    model = register_tiny()
    images = make_inventory_images(6, seed=7)
    with InventoryServer(images=list(images), images_per_listing=2) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run = run_sync(sitemap)
        placements = list(Placement.objects.filter(listing__sitemap=sitemap).order_by("listing_id", "position"))
        yield {"model": model, "server": server, "sitemap": sitemap, "run": run, "placements": placements}


def test_a_run_writes_a_row_per_placement_and_task_and_the_store_sees_a_write_that_went_around_it(world):
    placements = world["placements"]
    assert world["run"].classified == 6
    assert store_mismatches() == []
    assert EffectiveTag.objects.count() == len(placements) * len(Task.values)  # untagged tasks too
    assert {(row.source, row.label) for row in EffectiveTag.objects.filter(task=Task.IMAGE_TYPE)} == {("unknown", None)}
    assert {row.source for row in EffectiveTag.objects.filter(task=Task.COLOR)} == {"model"}

    # A write that bypasses the services is a mismatch until the store is refreshed.
    Classification.objects.filter(asset=placements[0].asset, task=Task.COLOR).update(label="purple")
    kept = stored(placements[0], Task.COLOR).label
    mismatches = store_mismatches()
    for name in ("label", "model_label"):
        assert f"placement {placements[0].pk}, color: {name} is {kept!r}, the rule says 'purple'" in mismatches
    assert effective_tags_refresh() == 1
    assert store_mismatches() == []
    assert effective_tags_refresh() == 0  # nothing differs: nothing is written


def test_a_refresh_reuses_its_compiled_statements_whatever_the_number_of_ids(world):
    placements = [p.pk for p in world["placements"]]
    effective_tags_refresh(placement_ids=placements[:1])  # compiles the placement scope's statements
    compiled = (_upsert_statement.cache_info().misses, _listing_checks_statement.cache_info().misses)
    Classification.objects.filter(task=Task.COLOR).update(label="purple")  # every color row differs: all written

    with CaptureQueriesContext(connection) as queries:
        written = effective_tags_refresh(placement_ids=placements)

    assert written == len(placements)
    assert (_upsert_statement.cache_info().misses, _listing_checks_statement.cache_info().misses) == compiled
    # Six ids went as one array (JSON on SQLite), not six parameters: the same statement serves any batch.
    one_array = "= ANY(" if connection.vendor == "postgresql" else "json_each("
    assert sum(one_array in query["sql"] for query in queries.captured_queries) == len(Task.values) + 1
    assert store_mismatches() == []


def test_a_runs_fetch_changing_an_asset_and_failing_a_placement(world):
    server, first, second = world["server"], *world["placements"][:2]
    before = first.asset_id
    server.images[0] = jpeg((20, 20, 220))  # new bytes behind the same URL
    server.images[1] = b"not an image at all"

    run_sync(world["sitemap"])

    first.refresh_from_db()
    assert stored(first, Task.COLOR).asset_id == first.asset_id != before
    assert Placement.objects.get(pk=second.pk).status == Placement.Status.FAILED
    assert (stored(second, Task.COLOR).source, stored(second, Task.IMAGE_TYPE).source) == ("model", "failed")
    assert store_mismatches() == []


def test_a_sync_changing_a_scrape_color_and_making_a_listing_gone_and_an_unchanged_one_costs_one_query(world):
    sitemap = world["sitemap"]
    listings = list(Listing.objects.filter(sitemap=sitemap).order_by("id"))

    def pages(colors: dict[int, str], drop: int | None = None) -> list[Page]:
        return [
            Page(loc=listing.url, images=list(listing.placements.order_by("position").values_list("url", flat=True)),
                 external_id=listing.external_id, attributes={"color": colors[n]} if n in colors else {})
            for n, listing in enumerate(listings)
            if n != drop
        ]  # fmt: skip

    inventory_sync(sitemap=sitemap, pages=pages({0: "gray"}, drop=2), seen_at=timezone.now(), complete=True)

    painted, gone = listings[0].placements.first(), listings[2].placements.first()
    assert (stored(painted, Task.COLOR).label, stored(painted, Task.COLOR).source) == ("Grey", "scrape")
    assert stored(gone, Task.COLOR).live is False
    assert store_mismatches() == []

    with CaptureQueriesContext(connection) as queries:
        assert effective_tags_refresh(sitemap_id=sitemap.pk, only_stale=True) == 0
    assert len(store_statements(queries)) == 1  # what an unchanged re-sync costs the store

    inventory_sync(sitemap=sitemap, pages=pages({0: "Red"}), seen_at=timezone.now(), complete=True)
    assert (stored(painted, Task.COLOR).label, stored(gone, Task.COLOR).live) == ("Red", True)
    assert store_mismatches() == []


def test_classifications_written_an_activation_and_a_rollback(world, register_tiny):
    first = world["placements"][0]
    newer = register_tiny(name="tiny 2", activate=False, size=(16, 16))  # another file

    model_promote(version=newer, force=True)  # heads switched: no result of the new model yet
    assert stored(first, Task.COLOR).source == "unknown"
    assert store_mismatches() == []

    run_sync(world["sitemap"])  # its classify step writes the new model's results
    assert Classification.objects.filter(model_version=newer).count() == 12
    assert stored(first, Task.COLOR).source == "model"
    assert store_mismatches() == []

    model_rollback(task=Task.COLOR)  # both heads of the promotion go back
    assert store_mismatches() == []
    assert (
        Classification.objects.get(asset=first.asset, task=Task.COLOR, model_version=world["model"]).label
        == stored(first, Task.COLOR).label
    )


def test_staff_and_advertiser_fixes_through_the_screens_and_the_api_and_a_revert(world, client):
    first, second, third = world["placements"][:3]
    staff = UserFactory(is_staff=True)
    # A staff fix from the service; an image type of Placeholder takes the color away (the color row follows).
    manual_fixes_apply(changes=[Change(first, Task.IMAGE_TYPE, "Placeholder")], user=staff, source="staff")
    assert (stored(first, Task.IMAGE_TYPE).label, stored(first, Task.COLOR).source) == ("Placeholder", "rule")
    assert store_mismatches() == []

    editor = MembershipFactory(advertiser=world["sitemap"].advertiser, role=Membership.Role.EDITOR).user
    client.force_login(editor)
    portal = client.post(
        reverse("reviews:portal-fixes", args=[world["sitemap"].pk]), {"change": f"{second.pk}:color:Black"}
    )
    assert portal.status_code == 302
    assert (stored(second, Task.COLOR).label, stored(second, Task.COLOR).source) == ("Black", "fix")
    assert store_mismatches() == []

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff).key}")
    posted = api.post(f"/api/images/{third.pk}/fixes/", {"task": "intent", "label": "Home & Garden"}, format="json")
    assert posted.status_code == 201, posted.content
    assert stored(third, Task.INTENT).label == "Home & Garden"
    assert store_mismatches() == []

    fix = ManualFix.objects.get(asset=second.asset)
    manual_fix_revert(fix=fix, user=staff, source="staff")  # no fix was in effect before: withdrawn
    assert (stored(second, Task.COLOR).label, stored(second, Task.COLOR).source) == (fix.old_label, "model")
    assert store_mismatches() == []


def test_a_carried_fix(world):
    server, first = world["server"], world["placements"][0]
    manual_fixes_apply(changes=[Change(first, Task.COLOR, "Burgundy")], user=None, source="staff")
    original = Image.open(io.BytesIO(server.images[0]))
    buffer = io.BytesIO()
    original.resize((int(original.width * 0.8), int(original.height * 0.8))).save(buffer, "JPEG", quality=70)
    server.images[0] = buffer.getvalue()  # the CDN re-encodes the photo
    server.rename()

    run_sync(world["sitemap"])

    copy = Placement.objects.get(url=server.image_url(0))
    assert ManualFix.objects.get(asset=copy.asset).source == ManualFix.Source.CARRIED
    assert (stored(copy, Task.COLOR).label, stored(copy, Task.COLOR).source) == ("Burgundy", "fix")
    assert store_mismatches() == []


def test_a_queue_decision_a_cluster_fix_and_a_bulk_retag(world, client):
    first, second, third, fourth = world["placements"][:4]
    staff = UserFactory(is_staff=True)
    review_decision_record(placement=first, task=Task.COLOR, label="Green", user=staff)
    assert stored(first, Task.COLOR).label == "Green"
    assert store_mismatches() == []

    near = {"phash": second.asset.phash, "color_signature": second.asset.color_signature}
    ImageAsset.objects.filter(pk=third.asset_id).update(**near)  # a near-duplicate now
    clusters_rebuild()
    assert stored(third, Task.COLOR).picture == stored(second, Task.COLOR).picture
    assert store_mismatches() == []
    cluster_fix_apply(
        sitemap=world["sitemap"], cluster_id=stored(second, Task.COLOR).picture, task=Task.SENSITIVE, label="sensitive",
        user=staff, source="staff",
    )  # fmt: skip
    assert {stored(p, Task.SENSITIVE).label for p in (second, third)} == {"sensitive"}
    assert store_mismatches() == []

    client.force_login(staff)
    bulk = client.post(
        reverse("reviews:staff-fixes", args=[world["sitemap"].pk]),
        {"bulk_label": "Stock", "bulk_task": Task.IMAGE_TYPE, "selected": [first.pk, fourth.pk]},
    )
    assert bulk.status_code == 302
    assert {stored(p, Task.IMAGE_TYPE).label for p in (first, fourth)} == {"Stock"}
    assert store_mismatches() == []


# The grid's queries read the store through its indexes -------------------------------------------------------

# A filter, and the index its page is read in the sort's order from.
INDEXED = [
    (GridFilters(), "effective_tag_order_idx"),
    (GridFilters(task="color", label="Red"), "effective_tag_label_idx"),
    (GridFilters(task="color", source="model"), "effective_tag_source_idx"),
    (GridFilters(confidence_below=0.9, sort="confidence", task="color"), "effective_tag_confidence_idx"),
    (GridFilters(sort="margin", task="color"), "effective_tag_margin_idx"),
    (GridFilters(sort="newest"), "effective_tag_placement_idx"),
    (GridFilters(task="color", listing_disagrees=True), "effective_tag_check_idx"),
]


def explain(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.fixture
def among_many(register_tiny):
    """A sitemap of 3,000 images in a store that holds another advertiser's 10,000 more (four tasks each)."""
    if connection.vendor != "postgresql":
        pytest.skip("query plans are checked on PostgreSQL (the production database)")
    model = register_tiny()
    background_load(classifications=20_000)
    sitemap = SitemapFactory()
    listings = Listing.objects.bulk_create(
        Listing(sitemap=sitemap, key=f"car-{k}", url=f"https://plans.example/cars/{k}") for k in range(300)
    )
    assets = ImageAsset.objects.bulk_create(
        ImageAsset(sha256=f"{i:064x}", phash=f"{i:016x}", width=640, height=480, format="JPEG", byte_size=1000,
                   original=f"originals/{i}.jpg", thumbnail=f"thumbnails/{i}.jpg", cluster_id=None)
        for i in range(3000)
    )  # fmt: skip
    Placement.objects.bulk_create(
        Placement(listing=listings[i // 10], url=f"https://plans.example/{i}.jpg", position=i % 10, asset=asset,
                  status="ok")
        for i, asset in enumerate(assets)
    )  # fmt: skip
    Classification.objects.bulk_create(
        Classification(asset=asset, model_version=model, task="color", label=("red", "green", "blue")[i % 3],
                       confidence=(i % 10) / 10, margin=(i % 7) / 7)
        for i, asset in enumerate(assets)
    )  # fmt: skip
    effective_tags_refresh(sitemap_id=sitemap.pk)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    assert EffectiveTag.objects.count() == 13_000 * len(Task.values)
    return sitemap


@pytest.mark.parametrize(("filters", "index"), INDEXED, ids=[index for _, index in INDEXED])
def test_the_grids_page_and_count_read_the_store_through_its_indexes(among_many, filters, index):
    with CaptureQueriesContext(connection) as queries:
        page = sitemap_grid(sitemap=among_many, filters=filters, paging=Paging(last=True))
    assert page.total > 0
    count, rows = (
        next(q["sql"] for q in queries.captured_queries if alias in q["sql"])
        for alias in (' AS "total"', ' AS "key_0"')
    )
    for sql in (count, rows):
        plan = explain(sql)
        assert "Seq Scan on reviews_effectivetag" not in plan, plan
        assert re.search(r"(using|on) effective_tag_", plan), plan
    plan = explain(rows)
    assert re.search(rf"Index (Only )?Scan (Backward )?using {index}\b", plan), plan


def test_a_multi_task_filter_looks_the_other_tasks_up_by_index(among_many):
    filters = GridFilters.from_params({"task": "color", "tag": ["sensitive:!none", "image_type:none"]})
    assert filters.tags == ("sensitive:!none", "image_type:none")

    with CaptureQueriesContext(connection) as queries:
        page = sitemap_grid(sitemap=among_many, filters=filters)

    assert (page.total, page.items) == (0, [])  # the rows above have no sensitivity result: none has a label
    count = next(q["sql"] for q in queries.captured_queries if ' AS "total"' in q["sql"])
    plan = explain(count)
    assert "Seq Scan on reviews_effectivetag" not in plan, plan
    assert len(re.findall(r"(?:using|on) effective_tag_\w+", plan)) >= 3, plan  # the color rows, one per condition


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite runs one writer at a time")
def test_a_refresh_computes_after_a_concurrent_writer_of_the_same_rows_commits(world):
    """A fix's transaction has refreshed the stored tags and not committed yet when a classification of the same
    picture is stored and refreshes them too. The second refresh must wait for the first writer's commit before it
    reads the rule's inputs: computed from a snapshot without the fix, its ON CONFLICT DO UPDATE (waiting for the fix's
    row lock, then rewriting the row) put the model's label back over the fix in effect."""
    placement = world["placements"][0]
    fixed = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def in_thread(work):
        def run() -> None:
            try:
                work()
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def fix() -> None:
        with transaction.atomic():
            manual_fixes_apply(changes=[Change(placement, Task.COLOR, "Burgundy")], user=None, source="staff")
            fixed.set()
            release.wait(timeout=60)

    def classify() -> None:
        with transaction.atomic():
            Classification.objects.filter(asset=placement.asset, task=Task.COLOR).update(label="Yellow")
            classifications_written.send(sender=Classification, asset_ids=[placement.asset_id])

    fixing = in_thread(fix)
    assert fixed.wait(timeout=60)
    classifying = in_thread(classify)

    def classify_waits() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return cursor.fetchone()[0] > 0

    # The classification's refresh waits for the fix's transaction (on the writer lock; before it, on the fix's row).
    deadline = time.monotonic() + 60
    while not classify_waits() and classifying.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    release.set()
    fixing.join(timeout=60)
    classifying.join(timeout=60)

    assert errors == []
    assert (stored(placement, Task.COLOR).label, stored(placement, Task.COLOR).source) == ("Burgundy", "fix")
    assert stored(placement, Task.COLOR).model_label == "Yellow"
    assert store_mismatches() == []
