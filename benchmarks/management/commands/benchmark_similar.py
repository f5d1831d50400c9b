"""manage.py benchmark_similar: the time of one "More like this" query by brute force at a given number of images,
in memory alone or (--database) end to end on benchmark_grid's sitemap with a cached vector per image."""

import contextlib
import os
import time
from typing import Any

import numpy as np
from django.core.management.base import CommandParser

from config.commands import BaseCommand
from reviews.similar import DEFAULT_LIMIT, normalise, top_matches


class Command(BaseCommand):
    help = (
        "Times reviews.similar's brute-force search (the matrix product and partial sort every query runs) over "
        "random L2-normalised float32 vectors: the median and worst of --queries queries, the matrix's memory, and "
        "the machine's load. The database reads that check the cached matrix is current come on top (README)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--images", type=int, default=100_000)
        parser.add_argument("--dim", type=int, default=512, help="Feature width (the vehicle model's is 512).")
        parser.add_argument("--queries", type=int, default=50)
        parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT)
        parser.add_argument(
            "--database",
            action="store_true",
            help="Also end to end: benchmark_grid's sitemap of --images images (built once), a random cached vector "
            "per image, then similar_in_sitemap cold (loading the matrix) and warm, and the grid page with the filter.",
        )

    def handle(self, *args: object, **options: Any) -> None:
        images, dim, limit = options["images"], options["dim"], options["limit"]
        rng = np.random.default_rng(0)
        matrix = np.empty((images, dim), dtype=np.float32)
        for start in range(0, images, 50_000):  # in slices: no float64 copy of the whole matrix
            stop = min(start + 50_000, images)
            matrix[start:stop] = normalise(rng.standard_normal((stop - start, dim), dtype=np.float32))
        queries = normalise(rng.standard_normal((options["queries"], dim), dtype=np.float32))
        top_matches(matrix, queries[0], limit)  # warm
        times = []
        for query in queries:
            started = time.perf_counter()
            top_matches(matrix, query, limit)
            times.append((time.perf_counter() - started) * 1000)
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        self.stdout.write(
            f"{images:,} images x {dim} float32 ({matrix.nbytes / 2**20:.0f} MiB): top {limit} in"
            f" median {np.median(times):.1f} ms, worst {max(times):.1f} ms over {len(times)} queries"
            f" (load average {load}, {os.cpu_count()} CPUs)"
        )
        del matrix
        if options["database"]:
            self._end_to_end(images, dim, options["queries"], limit)

    def _end_to_end(self, images: int, dim: int, queries: int, limit: int) -> None:
        from django.contrib.auth import get_user_model
        from django.db import connection, transaction
        from django.test import Client
        from django.test.utils import setup_test_environment
        from django.urls import reverse

        from benchmarks.management.commands.benchmark_grid import Command as GridBenchmark
        from benchmarks.management.commands.benchmark_grid import _insert
        from classifier.models import FeatureVector
        from reviews.models import EffectiveTag
        from reviews.similar import TASK, _feature_tensor, forget_indexes, similar_in_sitemap, similarity_head

        grid = GridBenchmark()
        grid.stdout, grid.stderr = self.stdout, self.stderr
        sitemap, _ = grid._sitemap(images)
        head = similarity_head()
        version, tensor = head.model_version, _feature_tensor(head.model_version, head)
        rows = EffectiveTag.objects.filter(sitemap=sitemap, task=TASK, live=True, asset_id__isnull=False)
        assets = sorted(set(rows.values_list("asset_id", flat=True)))
        features = FeatureVector.objects.filter(model_version=version, tensor=tensor)
        cached = set(features.values_list("asset_id", flat=True))
        missing = [asset for asset in assets if asset not in cached]
        rng = np.random.default_rng(1)
        for start in range(0, len(missing), 20_000):
            chunk = missing[start : start + 20_000]
            vectors = rng.standard_normal((len(chunk), dim), dtype=np.float32).astype("<f4")
            with transaction.atomic():
                _insert(
                    FeatureVector,
                    (
                        {"asset_id": asset, "model_version_id": version.pk, "tensor": tensor, "data": vector.tobytes()}
                        for asset, vector in zip(chunk, vectors, strict=True)
                    ),
                )
        if missing and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        first = rows.order_by("placement_id").values_list("placement_id", flat=True)[:queries]
        forget_indexes()
        started = time.perf_counter()
        found = similar_in_sitemap(sitemap=sitemap, placement_ids=[first[0]], limit=limit)
        cold = time.perf_counter() - started
        warm = []
        for placement_id in first:
            started = time.perf_counter()
            similar_in_sitemap(sitemap=sitemap, placement_ids=[placement_id], limit=limit)
            warm.append((time.perf_counter() - started) * 1000)
        self.stdout.write(
            f"{connection.vendor}, {found.indexed:,} of {found.total:,} images indexed: first query (loads the matrix)"
            f" {cold:.1f} s; then median {np.median(warm):.1f} ms, worst {max(warm):.1f} ms over {len(warm)} queries"
            " (the freshness check's two aggregates, the query image's vector, the product)"
        )
        with contextlib.suppress(RuntimeError):
            setup_test_environment(debug=False)
        user, _ = get_user_model().objects.get_or_create(username="grid-benchmark", defaults={"is_staff": True})
        client = Client()
        client.force_login(user)
        url = reverse("reviews:staff-grid", args=[sitemap.pk])
        pages = []
        for placement_id in first[:10]:
            started = time.perf_counter()
            response = client.get(url, {"task": str(TASK), "similar_to": str(placement_id)})
            pages.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.content[:300]  # noqa: S101 - a benchmark's sanity
        self.stdout.write(
            f"grid page ?similar_to= (top {limit}, server time): median {np.median(pages):.0f} ms,"
            f" worst {max(pages):.0f} ms over {len(pages)} pages"
        )
