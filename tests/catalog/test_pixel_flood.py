"""A pixel flood must not blow a Run's memory: single-colour RGBA PNGs of ~250 KB that decode to 240 MB each.

The sitemap holds 8 floods of 7745x7745 (60 MP, inside the general pixel limit, over the lower limit of formats
that cannot be decoded reduced: refused as too_many_pixels) and 8 of 5650x5650 (31.9 MP, just inside it: fetched,
thumbnailed and classified). Before the memory bounds, the 8 floods of 60 MP alone took the Run to ~7.8 GB.

The Run goes through `run_sitemap --sync` in a subprocess, whose whole process tree (the command, its fetch
processes and its classify pool) is measured as a container's memory limit counts it: the summed PSS (shared pages
counted once), sampled every 100 ms. The bound, FLOOD_PEAK_PSS_MB, is issue 18's for a worker: 500 MB. A PNG is
decoded a strip of rows at a time (catalog.decoding), so no process ever holds a flood at full size.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from catalog.inventory_server import InventoryServer
from catalog.models import ImageAsset, Placement, Run
from tests.catalog.floods import TreePssSampler, flood_pngs

pytestmark = pytest.mark.django_db(transaction=True)

FLOOD_PEAK_PSS_MB = 500

_RUN = """
import sys
import django
django.setup()
from django.core.management import call_command
call_command(*sys.argv[1:])
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
        process = subprocess.Popen(
            [sys.executable, "-c", _RUN, *command],
            env=env,
            cwd=settings.BASE_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with TreePssSampler(process.pid, interval=0.1) as sampler:
            stdout, stderr = process.communicate(timeout=600)
    peak_mb = sampler.peak_mb
    print(f"pixel flood, inline: peak PSS of the Run's process tree {peak_mb:.0f} MB ({sampler.samples} samples)")  # noqa: T201
    assert process.returncode == 0, stdout[-2000:] + stderr[-4000:]

    run = Run.objects.get()
    # Never a crash: every image is in (and classified), or failed with a clear reason.
    assert (run.status, run.urls, run.downloaded, run.failed) == (Run.Status.PARTIAL, 16, 8, 8), run.counters()
    assert run.failure_reasons == {"too_many_pixels": 8}
    assert run.classified == ImageAsset.objects.count() == 8
    refused = Placement.objects.filter(status=Placement.Status.FAILED).values_list("failure_detail", flat=True)
    assert all("cannot be decoded reduced" in detail for detail in refused)
    assert peak_mb < FLOOD_PEAK_PSS_MB, f"peak PSS {peak_mb:.0f} MB"
