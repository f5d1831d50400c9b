"""manage.py benchmark_feed at a tiny size: a real worker and a web server in processes of their own, the feed POSTed
over HTTP, every tag read back through the API. Figures are checked for shape and sense, never time."""

import io
import json

import pytest
from django.core.management import call_command

from catalog.models import ImageAsset, Run
from classifier.models import Classification

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_feed_benchmark_reads_every_tag_through_the_api_and_counts_each_process_group():
    out = io.StringIO()
    call_command("benchmark_feed", images=12, per_listing=4, json=True, stdout=out, stderr=io.StringIO())
    figures = json.loads(out.getvalue())

    assert (figures["images"], figures["listings"], figures["run_status"], figures["repost_status"]) == (
        12, 3, "succeeded", "succeeded",
    )  # fmt: skip
    assert figures["every_tag_readable_s"] > 0
    assert figures["repost_succeeded_s"] > 0
    assert figures["api_reads"] >= 1
    assert 0 < figures["worker_peak_pss_mb"] < 2000
    assert {"worker and pool", "postgres", "web"} <= set(figures["cpu_seconds"])
    # The first Run downloaded and classified every image; the re-POST found nothing new.
    first, again = Run.objects.order_by("pk")
    assert (first.downloaded, first.classified) == (12, 12)
    assert (again.not_modified, again.downloaded) == (12, 0)
    assert ImageAsset.objects.count() == 12
    assert Classification.objects.filter(status="ok").count() == 12 * 4
