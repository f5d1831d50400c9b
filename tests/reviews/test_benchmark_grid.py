"""The grid benchmark's cases run in a constant number of queries, whatever the page or the filter."""

import json

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_grid_case_runs_in_a_constant_number_of_queries(capsys):
    call_command("benchmark_grid", images=600, repeat=1, json=True)
    # A freshly migrated database: the starter models are set up, said on stderr; stdout is the JSON alone.
    output = capsys.readouterr()
    assert "registering and activating the starter models" in output.err
    rows = {row["case"]: row for row in json.loads(output.out)}
    assert {
        "first page",
        "last page",
        "color = Red",
        "color reviewed",
        "color not reviewed",
        "Dealer and Red",
        "listing disagrees",
        "reused pictures",
        "review by cluster",
    } <= set(rows)
    assert rows["first page"]["queries"] == rows["middle page"]["queries"] == rows["last page"]["queries"]
    assert rows["middle page"]["page"] == rows["last page"]["page"] // 2 + 1 > 1
    assert rows["color reviewed"]["images"] + rows["color not reviewed"]["images"] == rows["first page"]["images"]
    assert max(row["queries"] for row in rows.values()) <= 14
    assert rows["review by cluster"]["images"] > 0
    # The API pages as the grid does: the same page of the same filter, in a constant number of queries.
    assert rows["API: first page"]["images"] == rows["first page"]["images"]
    assert rows["API: first page"]["shown"] == rows["API: middle page"]["shown"] == rows["first page"]["shown"]
    assert rows["API: first page"]["queries"] == rows["API: middle page"]["queries"]
    assert rows["API: color = Red"]["images"] == rows["color = Red"]["images"]
    assert rows["reused pictures"]["images"] > 0

    call_command("benchmark_grid", images=1200, repeat=1, json=True)  # twice the images: the same queries
    bigger = {row["case"]: row["queries"] for row in json.loads(capsys.readouterr().out)}
    assert bigger == {case: row["queries"] for case, row in rows.items()}
