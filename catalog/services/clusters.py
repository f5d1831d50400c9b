"""Near-duplicate clusters of image assets, stored on ImageAsset.cluster_id.

A cluster is a root (its first asset; the cluster id is the root's id) and the assets that are near-duplicates of
the root (`near_duplicates`, the rule carry-forward follows too): perceptual hash within
settings.CARRY_FORWARD_MAX_DISTANCE bits AND color signature within settings.CARRY_FORWARD_MAX_COLOR_DISTANCE, so
that the same stock render in another paint is another picture. Each new asset joins the nearest root it is a
near-duplicate of, or founds its own cluster (leader clustering). An asset without a color signature is a
near-duplicate of nothing: it stays alone. Clusters are never
chained: A~B and B~C do not put A and C together when they are far apart, so a cluster never grows into a
catch-all of look-alike stock renders. An asset alone is its own cluster. Reviewers see it as a badge and can
review by cluster; conflicts between advertisers and the dataset split are computed per cluster.

Cost: a Run's call reads only candidates. The assets to place are read by id; the roots they could join are found
through the multi-index hashing of the pHash (catalog.imaging.PHASH_PIECES: four indexed 16-bit pieces, and the
values within 2 bits of each of the new hashes' pieces), so that clustering 10 new images against a million assets
reads ~85,000 roots, not a million, and 240 MB less at ten million. A Run with so many new images that the lookups
would cost more than a full read (`_index_pays`: ~35 new images at any size, fewer in a small database) reads
every asset's pHash instead (~24 MB at a million assets, read as a million rows), as does a rebuild. The
distances are computed with numpy in blocks of ~4M pairs. Color signatures (192 bytes each) are read only for the
assets to place and the roots within the bits of one of them, by id. `manage.py benchmark_clusters` measures both
ways at a million assets (README, "Running on several machines").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import BigIntegerField, Case, F, Max, Q, Value, When

from catalog import imaging
from catalog.imaging import (
    PHASH_PIECE_DIGITS,
    color_signature_array,
    phash_array,
    phash_cluster_roots,
    phash_piece_probes,
)
from catalog.models import ImageAsset, Outcome, PhashPiece, Run
from catalog.signals import clusters_changed

from .deadlocks import advisory_xact_lock

# Ids (or cluster ids) per UPDATE: keeps each statement within every database's parameter limit.
_UPDATE_CHUNK = 5000


def _lock() -> None:
    """One writer at a time: two Runs clustering at once could each miss the other's new assets."""
    advisory_xact_lock("catalog.clusters")


_Row = tuple[int, str, int | None]  # id, pHash, cluster id


def _arrays(rows: Iterable[_Row]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, hashes, cluster ids with -1 for none) of these rows, ordered by id."""
    ids, hashes, clusters = [], [], []
    for asset_id, phash, cluster_id in sorted(rows):
        ids.append(asset_id)
        hashes.append(phash)
        clusters.append(-1 if cluster_id is None else cluster_id)
    return np.array(ids, dtype=np.int64), phash_array(hashes), np.array(clusters, dtype=np.int64)


def _load() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, hashes, cluster ids with -1 for none) of every asset, ordered by id."""
    rows = ImageAsset.objects.order_by("id").values_list("id", "phash", "cluster_id")
    return _arrays(rows.iterator(chunk_size=10_000))


# One IN list holds at most this many probe values (SQLite allows 32,766 parameters); PostgreSQL takes one array.
_PROBES_PER_QUERY = 16_384


def _load_candidates(asset_ids: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(ids, hashes, cluster ids) of the assets to place (these, and every asset not clustered yet) and of the cluster
    roots that could be near one of them, found through the pHash piece indexes (see the module's docstring): one
    query for the assets to place (per 5,000 ids), one for the table's size, and one per piece. None when the lookups
    would cost more than reading every asset (`_index_pays`): the caller reads every asset."""
    keys = ("id", "phash", "cluster_id")
    rows: dict[int, _Row] = {}
    for start in range(0, max(1, len(asset_ids)), _UPDATE_CHUNK):
        to_place = Q(id__in=asset_ids[start : start + _UPDATE_CHUNK]) | Q(cluster_id__isnull=True)
        rows.update((row[0], row) for row in ImageAsset.objects.filter(to_place).values_list(*keys))
    hashes = (phash for _, phash, _ in rows.values())
    probes = phash_piece_probes(hashes, max_distance=settings.CARRY_FORWARD_MAX_DISTANCE)
    assets = ImageAsset.objects.aggregate(top=Max("id"))["top"] or 0  # an upper bound, from the primary key's end
    if assets <= _COUNTED_BELOW:  # counted exactly where that is cheap: ids can be sparse (deletes, tests)
        assets = ImageAsset.objects.count()
    if not _index_pays(sum(len(values) for values in probes), assets):
        return None
    for n, values in enumerate(probes):
        rows.update((row[0], row) for row in _roots_by_piece(n, sorted(values)))
    return _arrays(rows.values())


# A row found through an index costs about this many rows of the full read (random heap reads, a statement per
# piece): 15 against 3.7 microseconds at a million assets (`manage.py benchmark_clusters`).
INDEX_ROW_COST = 3
# Up to this many ids, the table is counted rather than bounded by MAX(id) (an index-only count: milliseconds).
_COUNTED_BELOW = 200_000


def _index_pays(probes: int, assets: int) -> bool:
    """Whether looking these probe values up costs less than reading every asset. Each value brings ~assets / 65,536
    roots (pieces of uniformly spread hashes) and costs a probe, each INDEX_ROW_COST rows of the full read: the index
    pays below ~35 new images whatever the database's size (548 values each), and below ~10 at 20,000 assets."""
    return probes * (1 + assets / 65_536) * INDEX_ROW_COST < assets


def _roots_by_piece(n: int, values: list[str]) -> Iterator[_Row]:
    """The cluster roots whose pHash piece n is one of `values`, through that piece's index."""
    for start in range(0, len(values), _PROBES_PER_QUERY):
        chunk = values[start : start + _PROBES_PER_QUERY]
        if connection.vendor == "postgresql":
            # One array parameter: an IN list of thousands of values cost ~0.2 s to send and plan. The expression is
            # PhashPiece(n)'s, so that the index serves it.
            first = 1 + n * PHASH_PIECE_DIGITS
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT id, phash, cluster_id FROM {ImageAsset._meta.db_table} "  # noqa: S608 - numbers only
                    f"WHERE SUBSTR(phash, {first:d}, {PHASH_PIECE_DIGITS:d}) = ANY(%s) AND cluster_id = id",
                    [chunk],
                )
                yield from cursor.fetchall()
        else:
            roots = ImageAsset.objects.alias(piece=PhashPiece(n)).filter(piece__in=chunk, cluster_id=F("id"))
            yield from roots.values_list("id", "phash", "cluster_id")


def near_duplicates(hash_distances: np.ndarray, signatures_a: np.ndarray, signatures_b: np.ndarray) -> np.ndarray:
    """Which pairs are near-duplicates (the same picture) under the configured thresholds: catalog.imaging's rule
    with settings.CARRY_FORWARD_MAX_DISTANCE and CARRY_FORWARD_MAX_COLOR_DISTANCE. Clusters and carry-forward
    both decide through it."""
    return imaging.near_duplicates(
        hash_distances,
        signatures_a,
        signatures_b,
        max_distance=settings.CARRY_FORWARD_MAX_DISTANCE,
        max_color_distance=settings.CARRY_FORWARD_MAX_COLOR_DISTANCE,
    )


def signatures_by_id(asset_ids: Iterable[int]) -> dict[int, str]:
    """The color signatures of these assets (hex, "" for none), by id, a chunk of ids per query."""
    wanted = sorted(set(asset_ids))
    found: dict[int, str] = {}
    for start in range(0, len(wanted), _UPDATE_CHUNK):
        rows = ImageAsset.objects.filter(id__in=wanted[start : start + _UPDATE_CHUNK])
        found.update(rows.values_list("id", "color_signature"))
    return found


def _signatures(ids: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Indexes into `ids` -> their color_signature_array rows, read from the database (phash_cluster_roots asks
    once, for the assets to place and the roots near them in bits)."""

    def read(indexes: np.ndarray) -> np.ndarray:
        wanted = [int(asset_id) for asset_id in ids[indexes]]
        known = signatures_by_id(wanted)
        return color_signature_array(known.get(asset_id, "") for asset_id in wanted)

    return read


def _roots(
    ids: np.ndarray, hashes: np.ndarray, *, clusters: np.ndarray | None = None, among: np.ndarray | None = None
) -> np.ndarray:
    """phash_cluster_roots under the near-duplicate rule (`near_duplicates`)."""
    return phash_cluster_roots(
        ids,
        hashes,
        max_distance=settings.CARRY_FORWARD_MAX_DISTANCE,
        clusters=clusters,
        among=among,
        signatures=_signatures(ids),
        max_color_distance=settings.CARRY_FORWARD_MAX_COLOR_DISTANCE,
    )


def _write(*, by_id: dict[int, int], by_cluster: dict[int, int]) -> int:
    """Sets cluster_id = target for the assets in `by_id` and for every member of the clusters in `by_cluster`
    (old cluster id -> new), in one UPDATE per _UPDATE_CHUNK keys. Returns the rows updated."""
    updated = 0
    ids, labels = sorted(by_id), sorted(by_cluster)
    for start in range(0, max(len(ids), len(labels)), _UPDATE_CHUNK):
        chunk_ids, chunk_labels = ids[start : start + _UPDATE_CHUNK], labels[start : start + _UPDATE_CHUNK]
        whens: list[When] = []
        by_target: dict[int, list[int]] = {}
        for old, new in ((label, by_cluster[label]) for label in chunk_labels):
            by_target.setdefault(new, []).append(old)
        whens += [When(cluster_id__in=olds, then=Value(new)) for new, olds in by_target.items()]
        own = [asset_id for asset_id in chunk_ids if by_id[asset_id] == asset_id]  # alone: its own cluster
        if own:
            whens.append(When(id__in=own, then=F("id")))
        by_target = {}
        for asset_id in chunk_ids:
            if by_id[asset_id] != asset_id:
                by_target.setdefault(by_id[asset_id], []).append(asset_id)
        whens += [When(id__in=members, then=Value(root)) for root, members in by_target.items()]
        updated += ImageAsset.objects.filter(Q(id__in=chunk_ids) | Q(cluster_id__in=chunk_labels)).update(
            cluster_id=Case(*whens, default=F("cluster_id"), output_field=BigIntegerField())
        )
    clusters_changed.send(sender=ImageAsset, asset_ids=ids, cluster_ids=sorted(set(by_cluster.values())))
    return updated


@transaction.atomic
def assets_cluster(*, asset_ids: list[int]) -> int:
    """Clusters these assets against all the others; returns how many assets' cluster changed.

    Every asset that has no cluster yet is clustered with them (one whose Run died before this step, or one a
    concurrent Run is still bringing in). An asset already in a cluster stays there. Idempotent. It reads the assets
    to place and the roots near them in bits (a query per 5,000 ids or probe values), or every asset when they are too
    many; see the module's docstring for the cost in memory and time.
    """
    if not asset_ids and not ImageAsset.objects.filter(cluster_id__isnull=True).exists():
        return 0  # a Run that brought nothing new does not read every hash
    _lock()
    ids, hashes, clusters = _load_candidates(sorted(set(asset_ids))) or _load()
    wanted = np.isin(ids, np.array(sorted(set(asset_ids)), dtype=np.int64)) | (clusters < 0)
    among = np.flatnonzero(wanted)
    if len(among) == 0:
        return 0
    roots = _roots(ids, hashes, clusters=clusters, among=among)
    changed = np.flatnonzero(roots != clusters)
    unclustered = changed[clusters[changed] < 0]
    moved = changed[clusters[changed] >= 0]
    by_cluster = {int(old): int(new) for old, new in zip(clusters[moved], roots[moved], strict=True)}
    by_id = {int(asset_id): int(root) for asset_id, root in zip(ids[unclustered], roots[unclustered], strict=True)}
    if not by_id and not by_cluster:
        return 0
    return _write(by_id=by_id, by_cluster=by_cluster)


@transaction.atomic
def clusters_rebuild() -> int:
    """Recomputes every asset's cluster from the hashes and color signatures alone (every pair: assets squared
    distances); returns how many assets' cluster changed. For `manage.py rebuild_clusters` after a change of a
    threshold or of the rule."""
    _lock()
    ids, hashes, clusters = _load()
    roots = _roots(ids, hashes)
    changed = np.flatnonzero(roots != clusters)
    by_id = {int(asset_id): int(root) for asset_id, root in zip(ids[changed], roots[changed], strict=True)}
    return _write(by_id=by_id, by_cluster={}) if by_id else 0


def run_assets_cluster(*, run: Run) -> int:
    """The Run step (settings.RUN_AFTER_FETCH, before carry-forward) that clusters the assets this Run brought
    in, with every asset not clustered yet. The assets of its cache hits were known before the Run: clustered
    when they came in (or not yet, and then clustered here anyway), so they cost nothing. Idempotent: a resumed
    Run calls it again."""
    downloaded = (
        ImageAsset.objects.filter(placements__last_run=run, placements__outcome=Outcome.DOWNLOADED)
        .values_list("id", flat=True)
        .distinct()
    )
    return assets_cluster(asset_ids=list(downloaded))
