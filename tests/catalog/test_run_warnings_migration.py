"""Warnings kept inside source_errors before Run.source_warnings existed move to it (and back, migrating down): the
migration's data step, run on the models as they are."""

import importlib

import pytest
from django.apps import apps

from tests.factories import RunFactory

pytestmark = pytest.mark.django_db

migration = importlib.import_module("catalog.migrations.0011_run_source_warnings")


def test_prefixed_warnings_move_to_their_own_field_and_back():
    mixed = RunFactory(status="succeeded", source_errors=["child 2: HTTP 500", "warning: line 3: raw '&' kept"])
    clean = RunFactory(status="succeeded", source_errors=[])

    migration.move_warnings(apps, None)

    mixed.refresh_from_db()
    clean.refresh_from_db()
    assert (mixed.source_errors, mixed.source_warnings) == (["child 2: HTTP 500"], ["line 3: raw '&' kept"])
    assert (clean.source_errors, clean.source_warnings) == ([], [])

    migration.move_back(apps, None)

    mixed.refresh_from_db()
    assert mixed.source_errors == ["child 2: HTTP 500", "warning: line 3: raw '&' kept"]
