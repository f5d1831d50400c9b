"""Measures the clustering of a Run's new images against a big database: through the pHash piece indexes (multi-index
hashing, what a Run does when its new images are few enough) and by reading every asset's pHash (what it did before,
and still does for many new images), in the same sitting.

The database first holds --assets background assets (uniformly spread pHashes, each its own cluster: loaded once,
reused by later calls, `--clear` removes them). Each case adds N new assets, half of them near-duplicates of a
background asset (within the threshold), clusters them both ways inside a transaction that is rolled back, and
checks that both ways give the same clusters."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from typing import Any
from unittest import mock

import numpy as np
from django.conf import settings
from django.core.management.base import CommandParser
from django.db import connection, transaction
from django.db.models import F

from catalog.imaging import phash_piece_probes
from catalog.models import ImageAsset
from catalog.services import clusters
from config.commands import BaseCommand

BACKGROUND = "benchmark-clusters/"  # the background assets' `original` starts with this
BATCH = 10_000
SIGNATURE = "80" * 192  # one color signature for all: near in bits is then near


class Command(BaseCommand):
    help = (
        "Benchmark of near-duplicate clustering at scale: seconds and rows read to cluster N new images against the "
        "background assets, through the pHash piece indexes and by reading every asset. Prints a table."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--assets", type=int, default=1_000_000, help="Background assets (default 1,000,000).")
        parser.add_argument("--new", type=int, nargs="+", default=[1, 10, 100, 1000], metavar="N")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--clear", action="store_true", help="Delete the background assets, then stop.")

    def handle(self, *args: Any, assets: int, new: list[int], seed: int, clear: bool, **options: Any) -> None:
        background = ImageAsset.objects.filter(original__startswith=BACKGROUND)
        if clear:
            self.stdout.write(f"deleted {background._raw_delete(background.db):,} background assets")
            return
        self._load(background, assets, seed)
        rng = np.random.default_rng(seed + 1)
        limit = settings.CARRY_FORWARD_MAX_DISTANCE
        roots = np.array(background.order_by("?").values_list("phash", flat=True)[: max(new)])
        total = ImageAsset.objects.count()
        header = (
            "| new images | via the index: s | rows read | every asset: s | rows read | index / every | a Run takes |"
        )
        lines = [header, "|---|---|---|---|---|---|---|"]
        for count in new:
            specs = self._new_hashes(count, roots, rng)
            indexed, indexed_rows, by_index = self._measure(specs, every=False)
            full, full_rows, by_scan = self._measure(specs, every=True)
            if by_index != by_scan:
                self.stderr.write(f"{count} new images: the two ways disagree")
            probes = sum(len(values) for values in phash_piece_probes(specs, max_distance=limit))
            chosen = "the index" if clusters._index_pays(probes, total) else "every asset"
            lines.append(
                f"| {count:,} | {indexed:.3f} | {indexed_rows:,} | {full:.3f} | {full_rows:,} | {indexed / full:.1%} "
                f"| {chosen} |"
            )
            self.stdout.write(lines[-1])
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        self.stdout.write(f"\nClustering N new images against {total:,} assets ({connection.vendor}; load {load}):\n")
        self.stdout.write("\n".join(lines))

    def _load(self, background, wanted: int, seed: int) -> None:
        have = background.count()
        if have >= wanted:
            return
        if connection.vendor == "postgresql":  # a million rows in seconds, not minutes of bulk_create
            self._load_postgresql(have, wanted, seed)
            return
        rng = np.random.default_rng(seed)
        for start in range(have, wanted, BATCH):
            stop = min(start + BATCH, wanted)
            hashes = rng.integers(0, 2**63, size=stop - start, dtype=np.int64) * 2 + rng.integers(0, 2, stop - start)
            ImageAsset.objects.bulk_create(
                ImageAsset(
                    sha256=hashlib.sha256(f"{BACKGROUND}{seed}-{i}".encode()).hexdigest(),
                    phash=f"{int(value) & (2**64 - 1):016x}",
                    color_signature=SIGNATURE,
                    width=1024, height=768, format="JPEG", byte_size=150_000,
                    original=f"{BACKGROUND}{i}.jpg", thumbnail=f"{BACKGROUND}{i}.webp",
                )
                for i, value in zip(range(start, stop), hashes, strict=True)
            )  # fmt: skip
            self.stdout.write(f"background: {stop:,} of {wanted:,} assets")
        background.filter(cluster_id__isnull=True).update(cluster_id=F("id"))
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {ImageAsset._meta.db_table}")

    def _load_postgresql(self, have: int, wanted: int, seed: int) -> None:
        table = ImageAsset._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute("SELECT setseed(%s)", [1 / (seed + 2)])
            for start in range(have, wanted, 100_000):
                stop = min(start + 100_000, wanted)
                cursor.execute(
                    f"INSERT INTO {table} (created_at, updated_at, sha256, phash, color_signature, width, height, "  # noqa: S608
                    "format, byte_size, original, thumbnail) "
                    "SELECT now(), now(), encode(sha256(convert_to(%s || i, 'UTF8')), 'hex'), "
                    "lpad(to_hex(floor(random() * 4294967296)::bigint), 8, '0') "
                    "|| lpad(to_hex(floor(random() * 4294967296)::bigint), 8, '0'), "
                    "%s, 1024, 768, 'JPEG', 150000, %s || i || '.jpg', %s || i || '.webp' "
                    "FROM generate_series(%s, %s) AS i",
                    [f"{BACKGROUND}{seed}-", SIGNATURE, BACKGROUND, BACKGROUND, start, stop - 1],
                )
                self.stdout.write(f"background: {stop:,} of {wanted:,} assets")
            cursor.execute(f"UPDATE {table} SET cluster_id = id WHERE cluster_id IS NULL")  # noqa: S608
            # As autovacuum keeps the table: the UPDATE left a dead entry per row in the cluster_id index, and the
            # lookup of unclustered assets walked them all (0.9 s at a million).
            cursor.execute(f"VACUUM ANALYZE {table}")

    def _measure(self, hashes: list[str], *, every: bool) -> tuple[float, int, list[int | None]]:
        """Seconds and rows read to cluster new assets of these pHashes, and the cluster of each (a background root's
        id, or the position of the new asset that is its root)."""
        rows_read: list[int] = []
        real_arrays = clusters._arrays

        def counted(rows: Iterable[tuple[int, str, int | None]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            arrays = real_arrays(rows)
            rows_read.append(len(arrays[0]))
            return arrays

        result: list[int | None] = []
        seconds = 0.0
        with (
            mock.patch.object(clusters, "_arrays", counted),
            mock.patch.object(clusters, "_index_pays", return_value=not every),
            transaction.atomic(),
        ):
            made = ImageAsset.objects.bulk_create(_new_asset(value) for value in hashes)
            ids = [asset.pk for asset in made]
            started = time.perf_counter()
            clusters.assets_cluster(asset_ids=ids)
            seconds = time.perf_counter() - started
            found = dict(ImageAsset.objects.filter(id__in=ids).values_list("id", "cluster_id"))
            result = [found[asset_id] for asset_id in ids]
            transaction.set_rollback(True)  # the next case starts from the background alone
        return seconds, sum(rows_read), [ids.index(cluster) if cluster in ids else cluster for cluster in result]

    def _new_hashes(self, count: int, roots: np.ndarray, rng: np.random.Generator) -> list[str]:
        """`count` pHashes: every other one a re-encoded copy of a background picture (a few bits off)."""
        hashes = []
        for n in range(count):
            if n % 2 == 0:
                value = int(roots[n % len(roots)], 16)
                for bit in rng.choice(64, size=int(rng.integers(0, 8)), replace=False):
                    value ^= 1 << int(bit)
            else:
                value = int(rng.integers(0, 2**63)) * 2
            hashes.append(f"{value:016x}")
        return hashes


def _new_asset(phash: str) -> ImageAsset:
    digest = hashlib.sha256(f"new-{time.time_ns()}-{phash}".encode()).hexdigest()
    return ImageAsset(
        sha256=digest, phash=phash, color_signature=SIGNATURE, width=800, height=600, format="JPEG",
        byte_size=100_000, original=f"new/{digest}.jpg", thumbnail=f"new/{digest}.webp",
    )  # fmt: skip
