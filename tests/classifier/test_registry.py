"""register_model / activate_model: the contract is checked against the graph; one active head per task."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from classifier.models import ModelHead, ModelVersion
from classifier.services.registry import model_activate
from tests.classifier.onnx_builders import classifier_contract

pytestmark = pytest.mark.django_db


def test_register_model_checks_the_contract_and_activates(tiny_model, capsys):
    model, spec = tiny_model
    call_command("register_model", str(model), "--spec", str(spec), "--activate", "--json")

    out = json.loads(capsys.readouterr().out)
    version = ModelVersion.objects.get(pk=out["id"])
    assert (out["status"], sorted(out["tasks"])) == ("active", ["color", "sensitive"])
    assert version.file.read() == model.read_bytes()
    assert set(ModelHead.objects.filter(is_active=True).values_list("task", flat=True)) == {"color", "sensitive"}

    call_command("register_model", str(model), "--spec", str(spec))  # the same file again: the same version
    assert ModelVersion.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "other"),
    [
        ({"name": "renamed"}, "name"),
        ({"heads": [{"output": "color", "task": "color", "activation": "softmax", "labels": ["x", "y", "z"]}]},
         "contract"),
    ],
)  # fmt: skip
def test_the_same_file_under_another_contract_is_refused_naming_the_version(tiny_model, change, other):
    # It handed back the version registered first and dropped the new name without a word.
    model, spec = tiny_model
    call_command("register_model", str(model), "--spec", str(spec), stdout=io.StringIO())
    first = ModelVersion.objects.get()
    spec.write_text(json.dumps({**classifier_contract(), **change}))

    with pytest.raises(CommandError) as refused:
        call_command("register_model", str(model), "--spec", str(spec))

    assert str(refused.value) == (
        f"refused {model}: the same ONNX file (SHA-256 {first.sha256[:12]}) is already registered as version "
        f'{first.pk} "{first.name}" with another {other}: use that version (activate_model {first.pk})'
    )
    assert list(ModelVersion.objects.values_list("name", flat=True)) == [first.name]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input": {"name": "wrong"}}, "wrong"),
        ({"heads": [{"output": "color", "task": "color", "activation": "softmax", "labels": ["a", "b"]}]}, "label"),
        ({"heads": [{"output": "missing", "task": "color", "activation": "softmax", "labels": ["a", "b", "c"]}]},
         "missing"),
        ({"heads": [{"output": "color", "task": "weather", "activation": "softmax", "labels": ["a", "b", "c"]}]},
         "unknown task"),
    ],
)  # fmt: skip
def test_a_contract_that_does_not_match_the_graph_is_refused_in_one_line(tiny_model, change, message):
    model, spec = tiny_model
    contract = classifier_contract()
    for key, value in change.items():
        contract[key] = {**contract[key], **value} if isinstance(value, dict) else value
    spec.write_text(json.dumps(contract))

    with pytest.raises(CommandError) as refused:
        call_command("register_model", str(model), "--spec", str(spec))

    assert message in str(refused.value)
    assert "\n" not in str(refused.value)
    assert not ModelVersion.objects.exists()


def test_activating_a_new_version_retires_the_one_it_replaces(register_tiny):
    first = register_tiny(name="first")
    second = register_tiny(name="second", activate=False, color_width=3, sensitive_width=2, size=(16, 16))
    assert second.status == "candidate"

    call_command("activate_model", second.sha256[:10], "--task", "color")
    first.refresh_from_db()
    assert first.status == "active"  # still serves `sensitive`
    assert ModelHead.objects.get(task="color", is_active=True).model_version == second

    model_activate(version=second)
    first.refresh_from_db()
    assert first.status == "retired"
    assert set(ModelHead.objects.filter(is_active=True).values_list("model_version__name", flat=True)) == {"second"}


def test_the_database_keeps_one_active_head_per_task(register_tiny):
    register_tiny(name="first")
    second = register_tiny(name="second", activate=False, size=(16, 16))
    with pytest.raises(IntegrityError), transaction.atomic():
        second.heads.filter(task="color").update(is_active=True)
