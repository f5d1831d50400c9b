"""manage.py export_dataset: builds and freezes in this process, --json prints one object, errors exit 1."""

import json
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from reviews.models import DatasetExport
from tests.factories import SitemapFactory

from .export_helpers import label, show, stored_asset

pytestmark = pytest.mark.django_db


def test_json_prints_one_object_with_the_frozen_export(capsys):
    sitemap = SitemapFactory()
    for i in range(10):
        label(show(sitemap, stored_asset(i)), ("Dealer", "Stock")[i % 2])
    label(show(sitemap, stored_asset(99, size=(40, 30))), "Dealer")

    call_command("export_dataset", "--task", "image_type", "--advertiser", sitemap.advertiser.slug, "--json")

    out = json.loads(capsys.readouterr().out)
    export = DatasetExport.objects.get()
    assert export.status == "frozen"
    assert out == {
        "export": export.pk,
        "task": "image_type",
        "items": 10,
        "splits": {"train": export.counts["train"], "test": export.counts["test"]},
        "excluded": {"too_small": 1},
        "label_issues": 0,
        "file": export.file.path,
        "sha256": export.sha256,
    }
    assert sum(out["splits"]["test"].values()) == 2


def test_errors_are_one_line_and_nothing_is_created():
    with pytest.raises(CommandError, match="no labelled images match these filters"):
        call_command("export_dataset", "--task", "color", "--json")
    with pytest.raises(CommandError, match="unknown advertiser: nobody"):
        call_command("export_dataset", "--task", "color", "--advertiser", "nobody")
    assert not DatasetExport.objects.exists()


def test_a_bad_date_exits_1_with_one_line_on_stderr():
    done = subprocess.run(
        [sys.executable, "manage.py", "export_dataset", "--task", "color", "--since", "yesterday"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "--since takes a date as YYYY-MM-DD" in done.stderr or "invalid _date value" in done.stderr
