"""A pixel flood must not blow a Run's memory: single-colour RGBA PNGs of ~250 KB that decode to 240 MB each.

The sitemap holds 8 floods of 7745x7745 (60 MP, inside the general pixel limit, over the lower limit of formats
that cannot be decoded reduced: refused as too_many_pixels) and 8 of 5650x5650 (31.9 MP, just inside it: fetched,
thumbnailed and classified). Before the memory bounds, the 8 floods of 60 MP alone took the Run to ~7.8 GB.

The Run goes through `run_sitemap --sync` in a subprocess, so that its peak RSS (ru_maxrss of the process and
of its classify pool) is measurable. The bound, FLOOD_PEAK_RSS_MB: Python, Django and onnxruntime with the
starter models weigh ~300 MB; the decoded-pixel budget of the fetch threads (settings.IMAGE_DECODE_BUDGET_PIXELS,
64 MP, 4 bytes a pixel) adds at most ~256 MB; the classify step decodes one image at a time. Measured: 398 MB
on the development venv, 621 MB in a fresh CI install on a loaded machine (allocator arenas of the fetch
threads); the bound is 800 MB, ten times under the 7.8 GB of before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from catalog.inventory_server import InventoryServer
from catalog.models import ImageAsset, Placement, Run
from tests.catalog.floods import flood_pngs

pytestmark = pytest.mark.django_db(transaction=True)

FLOOD_PEAK_RSS_MB = 800

_MEASURE = """
import json, resource, sys
import django
django.setup()
from django.core.management import call_command
status = "ok"
try:
    call_command(*sys.argv[1:])
except SystemExit as exc:
    status = f"exit {exc.code}"
except Exception as exc:
    status = f"{type(exc).__name__}: {exc}"
own, pool = (resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print("PEAK", json.dumps({"peak_kb": max(own, pool), "own_kb": own, "pool_kb": pool, "status": status}))
"""


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def test_a_pixel_flood_runs_within_the_memory_bound(tmp_path):
    call_command("register_starter_models")
    floods = flood_pngs(8) + flood_pngs(8, side=5650)
    with InventoryServer(images=floods, images_per_listing=4) as server:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": _database_url(),
            "DATABASE_CONN_MAX_AGE": "0",
            "DJANGO_MEDIA_ROOT": str(tmp_path / "media"),
            "FETCH_ALLOW_NETWORKS": "127.0.0.0/8",
        }
        command = ["run_sitemap", "--advertiser", "flood", "--url", server.sitemap_url, "--sync", "--json"]
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE, *command],
            env=env,
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith("PEAK ")]
    assert lines, done.stdout[-2000:] + done.stderr[-4000:]
    measured = json.loads(lines[-1][5:])
    peak_mb = measured["peak_kb"] / 1024
    print(f"pixel flood: peak RSS {peak_mb:.0f} MB", measured)  # noqa: T201
    assert measured["status"] == "ok", done.stderr[-4000:]

    run = Run.objects.get()
    # Never a crash: every image is in (and classified), or failed with a clear reason.
    assert (run.status, run.urls, run.downloaded, run.failed) == (Run.Status.PARTIAL, 16, 8, 8), run.counters()
    assert run.failure_reasons == {"too_many_pixels": 8}
    assert run.classified == ImageAsset.objects.count() == 8
    refused = Placement.objects.filter(status=Placement.Status.FAILED).values_list("failure_detail", flat=True)
    assert all("cannot be decoded reduced" in detail for detail in refused)
    assert peak_mb < FLOOD_PEAK_RSS_MB, f"peak RSS {peak_mb:.0f} MB"
