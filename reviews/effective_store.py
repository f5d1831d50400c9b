"""The stored effective tags (reviews.models.EffectiveTag): one row per (placement, task), written from the one rule.

`effective_tags_refresh` is the only writer. It compiles the Placement queryset that
reviews.effective.annotate_effective annotates (`fresh_rows`) into one `INSERT ... SELECT ... ON CONFLICT DO UPDATE`
per task, which rewrites a row only where something differs: the rule is never restated here, and refreshing rows
that did not change costs a read, not a write. The listings whose rows changed then get their listing check again
(reviews.crosscheck.listing_check: the grid's "listing disagrees" filter), in one more statement.

What a tag depends on, and who refreshes it (in the writer's transaction; the receivers are connected in
reviews.apps):
- a placement's image or status: catalog.signals.placements_changed (a Run's fetch);
- listings and placements gone or live again, positions, the scrape's color: catalog.signals.listings_synced
  (only the placements whose copied inputs differ are rewritten: an unchanged sync costs one query);
- near-duplicate clusters (the stored picture): catalog.signals.clusters_changed;
- the active model's results: classifier.signals.classifications_written;
- which model is active: classifier.signals.heads_switched (every placement, one statement per task);
- manual fixes: their writers in reviews.services, for the fixed (advertiser, asset) scopes;
- rows made in bulk outside these writers (benchmarks, tests): call effective_tags_refresh after loading.

Concurrency (PostgreSQL, READ COMMITTED; several workers, Runs and reviewers at once). Every refresh first takes one
transaction-level advisory lock (`effective_tags_lock`), held until its writer commits, and only then reads anything
(the active heads, the placements in scope, the rule's inputs): so the store's writers take their locks in one order
(that lock, then their rows) and never deadlock on reviews_effectivetag, and each refresh computes from a snapshot
taken after every earlier refresh, and the inputs its writer wrote before it, committed. Without it two writers whose
inputs meet at a row (a fix and a classification of one picture; two classify batches whose assets share a listing's
check) each computed from a snapshot without the other's uncommitted input, and the later `ON CONFLICT DO UPDATE`
rewrote the row from its stale one: the store drifted from the rule; and their row locks, taken in plan order across
the upserts and the listing checks, deadlocked. The writers' transactions end at their refresh (a batch of a Run's
fetch, a classify batch, a save of fixes), so the lock is held for a refresh's statements: tens of milliseconds.
Holders wait for nothing but the store's rows, which only holders write: the inputs (placements, classifications,
fixes) are written before the lock is asked for. A finer lock (per listing or per asset) would let unrelated
advertisers' refreshes run side by side, at the cost of a lock per key and a transaction's lock table: one lock is
enough while refreshes are short. SQLite serialises its writers itself.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

from django.db import connection, connections, transaction
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    ExpressionWrapper,
    F,
    FilteredRelation,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.db.models.lookups import Exact
from django.db.models.sql import UpdateQuery

from catalog.models import Placement, Task
from catalog.services.deadlocks import advisory_xact_lock
from classifier.models import Classification

from .crosscheck import listing_check
from .effective import ColumnNames, annotate_effective, scoped_versions, scrape_color, tasks_needed
from .expressions import ActiveHeads, InArray, Slot, active_heads, fill_slots, picture
from .models import EffectiveTag

# The store's columns as the refresh writes them; the first two are the row's key.
KEY = ("placement_id", "task")
COPIED = (
    "sitemap_id", "listing_id", "position", "asset_id", "picture", "live", "label", "source", "model_label",
    "model_confidence", "model_margin", "model_version_id", "crop_source", "scrape_color",
)  # fmt: skip
COLUMNS = KEY + COPIED
# Ids per statement: bounds each statement's work (they go as one parameter, whatever their number).
CHUNK = 10_000
Compiled = tuple[str, tuple[Any, ...]]  # a statement and its parameters, some of them Slots


def tasks_reading(tasks: Iterable[str]) -> list[str]:
    """The tasks whose effective tag reads these tasks' tags: themselves, and color for the image type (a
    placeholder has no color). Derived from the rule's own dependencies (reviews.effective.tasks_needed)."""
    changed = set(tasks)
    return [task for task in Task.values if changed & set(tasks_needed([task]))]


def live_expression() -> ExpressionWrapper:
    """Whether the outer placement is live: neither it nor its listing is gone."""
    return ExpressionWrapper(Q(is_gone=False, listing__is_gone=False), output_field=BooleanField())


def fresh_rows(placements: QuerySet[Placement], task: str, heads: Mapping[str, int]) -> QuerySet[Any]:
    """The store's rows of these placements for the task as the rule gives them now (dicts keyed by COLUMNS, the
    listing check aside): what the refresh writes, and what the tests compare the store with."""
    column = ColumnNames(task)
    return (
        annotate_effective(placements, [task], heads)
        .values(
            "listing_id",
            "position",
            "asset_id",
            placement_id=F("id"),
            task=Value(task, output_field=CharField()),
            sitemap_id=F("listing__sitemap_id"),
            picture=picture(),
            live=live_expression(),
            label=F(column.label),
            source=F(column.source),
            model_label=Case(
                When(**{column("model_status"): Classification.Status.OK}, then=F(column("model_label"))),
                default=None,
                output_field=CharField(),
            ),
            model_confidence=F(column("model_confidence")),
            model_margin=F(column("model_margin")),
            model_version_id=F(column("model_version")),
            crop_source=F(column("crop_source")),
            scrape_color=F(column("scrape_color")),
        )
        .order_by()
    )


def effective_tags_lock() -> None:
    """Takes the store's writer lock, which every writer of the store holds until it commits (see the module's
    docstring), for the rest of the current transaction. Taken again in the same transaction, it returns at once. A
    caller that reads what to refresh before calling effective_tags_refresh (which takes it itself) takes it first,
    so that it reads after the last writer's commit."""
    advisory_xact_lock("reviews.effective_store")


# The scopes a refresh narrows to, each a list of ids left open in the compiled statements (InArray's Slot).
SCOPES = {
    "placements": "id",
    "assets": "asset_id",
    "advertisers": "listing__sitemap__advertiser_id",
    "sitemaps": "listing__sitemap_id",
}


HeadsKey = tuple[tuple[tuple[str, int], ...], tuple[tuple[int, int], ...]]


def _heads_key(task: str, heads: Mapping[str, int]) -> HeadsKey:
    """What the task's statement depends on, hashable: the active heads, and the task's scoped heads."""
    return tuple(sorted(heads.items())), tuple(sorted(scoped_versions(heads, task).items()))


@functools.lru_cache(maxsize=256)
def _upsert_statement(alias: str, task: str, heads_key: HeadsKey, scope: frozenset[str]) -> Compiled:
    """One statement: the scope's rows for the task, inserted or rewritten where they differ; RETURNING, for each
    row written, its listing and whether the listing's check may have changed (a color row, or a new row: it has no
    check yet; telling a new row needs PostgreSQL's xmax, elsewhere every row written names its listing).

    Compiled once per (task, active and scoped heads, scope): the rule's SQL costs ~20 ms of Python to build, more than
    the statement takes to run on a batch of a Run, which refreshes every few hundred milliseconds."""
    connection = connections[alias]
    placements = Placement.objects.all()
    for name in sorted(scope):
        placements = placements.filter(InArray(F(SCOPES[name]), Slot(name)))
    active, scoped = heads_key
    heads = ActiveHeads(dict(active), {task: dict(scoped)})
    sql, params = fresh_rows(placements, task, heads).query.sql_with_params()
    quote = connection.ops.quote_name
    table = quote(EffectiveTag._meta.db_table)
    names = ", ".join(quote(name) for name in COLUMNS)
    fresh = ", ".join(f"fresh.{quote(name)}" for name in COLUMNS)
    assign = ", ".join(f"{quote(name)} = EXCLUDED.{quote(name)}" for name in COPIED)
    differs = " OR ".join(f"{table}.{quote(name)} IS DISTINCT FROM EXCLUDED.{quote(name)}" for name in COPIED)
    key = ", ".join(quote(name) for name in KEY)
    checked = "true" if task == Task.COLOR or connection.vendor != "postgresql" else f"({table}.xmax::text = '0')"
    # Names are constants and values the compiled queryset's parameters. "WHERE true": SQLite needs it to parse
    # the ON CONFLICT after a SELECT.
    statement = (
        f"INSERT INTO {table} ({names}) SELECT {fresh} FROM ({sql}) AS fresh WHERE true "  # noqa: S608
        f"ON CONFLICT ({key}) DO UPDATE SET {assign} WHERE {differs} RETURNING {quote('listing_id')}, {checked}"
    )
    return statement, tuple(params)


def _upsert(task: str, heads: Mapping[str, int], scope: Mapping[str, Sequence[int]]) -> list[int | None]:
    """Writes the scope's rows for the task where they differ (_upsert_statement). Returns, for each row written,
    its listing when the listing's check may have changed, else None."""
    statement, params = _upsert_statement(connection.alias, task, _heads_key(task, heads), frozenset(scope))
    with connection.cursor() as cursor:
        cursor.execute(statement, fill_slots(params, scope, connection.vendor))
        return [listing_id if checked else None for listing_id, checked in cursor.fetchall()]


@functools.lru_cache(maxsize=8)
def _listing_checks_statement(alias: str) -> Compiled:
    """The UPDATE that sets the listing check (reviews.crosscheck.listing_check) of every row of the listings in
    the Slot "listings" where it differs. Compiled once: its subqueries cost ~300 ms of Python to build."""
    listings = InArray(F("listing_id"), Slot("listings"))
    colors = EffectiveTag.objects.filter(listings, task=Task.COLOR, live=True)
    fresh = listing_check(colors)
    differing = (
        EffectiveTag.objects.filter(listings)
        .annotate(kept=Coalesce("listing_check", -1), now=Coalesce(fresh, -1, output_field=IntegerField()))
        .exclude(kept=F("now"))
    )
    query = cast(UpdateQuery, differing.query.chain(UpdateQuery))  # as QuerySet.update() does, short of running it
    query.add_update_values({"listing_check": fresh})
    query.clear_select_clause()
    sql, params = query.get_compiler(alias).as_sql()
    return sql, tuple(params)


def _listing_checks_write(listing_ids: Iterable[int]) -> int:
    """Sets the listing check of every row of these listings where it differs, one statement per CHUNK listings;
    returns the rows updated."""
    statement, params = _listing_checks_statement(connection.alias)
    updated = 0
    with connection.cursor() as cursor:
        for chunk in _chunks(listing_ids):
            cursor.execute(statement, fill_slots(params, {"listings": chunk}, connection.vendor))
            updated += cursor.rowcount
    return updated


def _chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def stale_placements(*, sitemap_id: int) -> QuerySet[Placement]:
    """The sitemap's placements whose stored color row is missing or copies an input that a sync may change: the
    position, the liveness (placement or listing gone or live again), the scrape's color. One query (a join of the
    sitemap's placements with their color rows); an unchanged sitemap has none.

    The color row stands for the placement's rows: every writer writes a placement's rows of every task at once
    when it first writes any (a sync, a fetch), and refreshes all of them when it is stale."""
    kept = {
        "kept_id": F("color_row__id"),
        "kept_position": F("color_row__position"),
        "kept_live": F("color_row__live"),
        "kept_scrape": Coalesce(F("color_row__scrape_color"), Value(""), output_field=CharField()),
    }
    differs = [~Q(Exact(F(f"kept_{name}"), F(name))) for name in ("position", "live", "scrape")]
    return (
        Placement.objects.filter(listing__sitemap_id=sitemap_id)
        .annotate(
            color_row=FilteredRelation("effective_tags", condition=Q(effective_tags__task=Task.COLOR)),
            live=live_expression(),
            scrape=Coalesce(scrape_color(), Value(""), output_field=CharField()),
        )
        .annotate(**kept)
        .filter(Q(kept_id__isnull=True) | differs[0] | differs[1] | differs[2])
        .order_by()
    )


def effective_tags_refresh(
    *,
    placement_ids: Iterable[int] | None = None,
    asset_ids: Iterable[int] | None = None,
    advertiser_id: int | None = None,
    sitemap_id: int | None = None,
    tasks: Iterable[str] | None = None,
    only_stale: bool = False,
) -> int:
    """Writes the stored effective tags of the placements in scope from reviews.effective.annotate_effective: one
    statement per task (and per CHUNK ids), then one for the listing checks of the listings whose rows changed.
    Returns how many (placement, task) rows it inserted or rewrote.

    The scope is the intersection of what is given: placement ids, asset ids, an advertiser (a fix's scope is
    (advertiser, asset)), a sitemap; nothing given: every placement. `tasks` (default: every task) is widened to
    the tasks that read them (color reads the image type). `only_stale` (with `sitemap_id`) narrows the scope to
    the placements whose copied inputs changed (stale_placements): an unchanged sitemap costs one query.

    Takes the store's writer lock first (effective_tags_lock), in a transaction of its own when the caller has none
    (inside the caller's, no savepoint: the refresh is part of the caller's write, and each savepoint is a round trip
    on every batch).
    """
    with transaction.atomic(savepoint=False):
        effective_tags_lock()
        ordered = tasks_reading(Task.values if tasks is None else tasks)
        fixed: dict[str, list[int]] = {}
        if advertiser_id is not None:
            fixed["advertisers"] = [advertiser_id]
        if sitemap_id is not None:
            fixed["sitemaps"] = [sitemap_id]
        if only_stale:
            if sitemap_id is None:
                raise ValueError("only_stale needs a sitemap_id")
            stale = set(stale_placements(sitemap_id=sitemap_id).values_list("id", flat=True))
            placement_ids = stale if placement_ids is None else stale & set(placement_ids)
        scopes: list[dict[str, list[int]]] = [fixed]
        if placement_ids is not None:
            scopes = [{**fixed, "placements": chunk} for chunk in _chunks(placement_ids)]
        if asset_ids is not None:
            scopes = [{**scope, "assets": chunk} for scope in scopes for chunk in _chunks(asset_ids)]
        if not scopes or not ordered:
            return 0
        heads = active_heads()
        written = 0
        listings: set[int] = set()
        for scope in scopes:
            for task in ordered:
                changed = _upsert(task, heads, scope)
                listings.update(listing_id for listing_id in changed if listing_id is not None)
                written += len(changed)
        _listing_checks_write(listings)
        return written


# Receivers (connected in reviews.apps.ReviewsConfig.ready) --------------------------------------------------------


def on_placements_changed(
    sender: object, *, placement_ids: list[int], asset_ids: list[int] | None = None, **kwargs: object
) -> None:
    # The placements showing the assets are read under the lock: one that another Run's fetch just pointed at one
    # of them is seen once that fetch has committed (or that fetch's own refresh comes after this one).
    with transaction.atomic(savepoint=False):
        effective_tags_lock()
        if asset_ids:
            showing = Placement.objects.filter(asset_id__in=asset_ids).values_list("id", flat=True)
            placement_ids = sorted({*placement_ids, *showing})
        if placement_ids:
            effective_tags_refresh(placement_ids=placement_ids)  # the lock, taken again, returns at once


def on_listings_synced(sender: object, *, sitemap_id: int, **kwargs: object) -> None:
    effective_tags_refresh(sitemap_id=sitemap_id, only_stale=True)


def on_clusters_changed(sender: object, *, asset_ids: list[int], cluster_ids: list[int], **kwargs: object) -> None:
    # The placements showing those assets first (one query, under the lock, as on_placements_changed reads them): a
    # new asset that no placement shows yet costs no more.
    with transaction.atomic(savepoint=False):
        effective_tags_lock()
        showing = Placement.objects.filter(Q(asset_id__in=asset_ids) | Q(asset__cluster_id__in=cluster_ids))
        placement_ids = list(showing.values_list("id", flat=True))
        if placement_ids:
            effective_tags_refresh(placement_ids=placement_ids)  # the lock, taken again, returns at once


def on_classifications_written(sender: object, *, asset_ids: list[int], **kwargs: object) -> None:
    effective_tags_refresh(asset_ids=asset_ids)


def on_heads_switched(sender: object, *, tasks: list[str], advertiser_id: int | None = None, **kwargs: object) -> None:
    """Every placement of the tasks; a scoped head's switch (`advertiser_id`), that advertiser's placements."""
    effective_tags_refresh(tasks=tasks, advertiser_id=advertiser_id)
