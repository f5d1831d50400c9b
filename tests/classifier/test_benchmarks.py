"""The benchmark commands, end to end on a few images: every figure they print is there and the passes did what
their names say. Their timings are figures to read, never asserted."""

import json

import pytest
from django.core.management import call_command

# benchmark_runs serves its inventory from another process and fetches with threads of their own connections.
pytestmark = pytest.mark.django_db(transaction=True)


STARTING_MODELS = "no active model: registering and activating the starter models"


def test_benchmark_classifier_measures_the_stack_with_and_without_keys(capsys):
    # A freshly migrated database: the benchmark sets up the models it measures, and says so on stderr only.
    call_command("benchmark_classifier", images=8, batch=4, processes=[1], json=True)

    output = capsys.readouterr()
    assert STARTING_MODELS in output.err
    (row,) = json.loads(output.out)
    assert row["processes"] == 1
    assert row["images"] == 8
    assert min(row["models_alone_per_s"], row["stack_per_s"], row["stack_keys_per_s"]) > 0


def test_benchmark_runs_measures_three_passes_against_both_ceilings(capsys):
    # A freshly migrated database: it failed with "no active model" here.
    call_command("benchmark_runs", images=[30], stack_images=8, json=True)

    output = capsys.readouterr()
    assert STARTING_MODELS in output.err
    result = json.loads(output.out)["sizes"][0]
    first, unchanged, renamed = result["rows"]
    assert (first["status"], first["urls"], first["downloaded"], first["classified"]) == ("succeeded", 30, 30, 30)
    assert (unchanged["not_modified"], unchanged["server_200s"], unchanged["new_assets"]) == (30, 0, 0)
    assert (renamed["cache_hits"], renamed["server_200s"], renamed["new_assets"]) == (30, 30, 0)
    assert [row["images"] for row in result["stack"]] == [8] * len(result["stack"])
    assert result["first_to_stack"] > 0
    assert result["first_to_stack_keys"] > 0
    assert result["unchanged_rerun_ratio"] > 0


def test_a_benchmark_leaves_active_models_as_they_are(capsys):
    call_command("register_starter_models")
    capsys.readouterr()

    call_command("benchmark_classifier", images=4, batch=4, processes=[1], json=True)

    assert STARTING_MODELS not in capsys.readouterr().err
