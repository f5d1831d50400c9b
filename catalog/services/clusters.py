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

Cost: every call loads every asset's pHash (8 bytes an asset in memory, plus its id and cluster: ~24 MB at a
million assets, read as a million rows) and computes new assets x cluster roots Hamming distances with
numpy, in blocks of ~4M pairs: measured on the development machine, ~5.6 s per 1,000 new assets against a million,
so a cold Run of 10,000 new images costs about a minute there, plus ~1 s to link the components. Color signatures
(192 bytes each) are read only for the assets to place and the roots within the bits of one of them, by id. Past ~10M
assets, or for large cold Runs, replace the brute force with an index of the hashes: multi-index hashing
(split the 64 bits into 11 substrings: two hashes within 10 bits share at least one substring exactly, so
exact-match lookups on 11 indexed columns find the candidates) or a BK-tree kept in memory by a service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import BigIntegerField, Case, F, Q, Value, When

from catalog import imaging
from catalog.imaging import color_signature_array, phash_array, phash_cluster_roots
from catalog.models import ImageAsset, Outcome, Run
from catalog.signals import clusters_changed

from .deadlocks import advisory_xact_lock

# Ids (or cluster ids) per UPDATE: keeps each statement within every database's parameter limit.
_UPDATE_CHUNK = 5000


def _lock() -> None:
    """One writer at a time: two Runs clustering at once could each miss the other's new assets."""
    advisory_xact_lock("catalog.clusters")


def _load() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, hashes, cluster ids with -1 for none) of every asset, ordered by id."""
    rows = ImageAsset.objects.order_by("id").values_list("id", "phash", "cluster_id")
    ids, hashes, clusters = [], [], []
    for asset_id, phash, cluster_id in rows.iterator(chunk_size=10_000):
        ids.append(asset_id)
        hashes.append(phash)
        clusters.append(-1 if cluster_id is None else cluster_id)
    return np.array(ids, dtype=np.int64), phash_array(hashes), np.array(clusters, dtype=np.int64)


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
    concurrent Run is still bringing in). An asset already in a cluster stays there. Idempotent. A constant
    number of queries for up to 5,000 changed assets; see the module's docstring for the cost in memory and time.
    """
    if not asset_ids and not ImageAsset.objects.filter(cluster_id__isnull=True).exists():
        return 0  # a Run that brought nothing new does not read every hash
    _lock()
    ids, hashes, clusters = _load()
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
