"""The classifier tables in the admin: read-only histories, and an Activate action that refuses as the command does."""

import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from catalog.models import Placement
from classifier.management.commands.register_starter_models import STARTER_DIR, STARTERS
from classifier.models import ModelVersion, OcclusionMap, Promotion, ShadowPass, TrainingJob
from classifier.services.registry import model_register
from tests.classifier.onnx_builders import classifier_contract, mean_classifier
from tests.factories import ImageAssetFactory, PlacementFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(username="admin", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def versions():
    active = model_register(
        data=mean_classifier(size=(8, 8)), contract=classifier_contract(name="active"), activate=True
    )
    candidate = model_register(
        data=mean_classifier(size=(16, 16)), contract=classifier_contract(name="candidate", size=(16, 16))
    )
    return active, candidate


def activate(client, version):
    return client.post(
        reverse("admin:classifier_modelversion_changelist"),
        {"action": "activate", "_selected_action": [version.pk]},
        follow=True,
    )


def test_the_activate_action_promotes_a_ready_candidate(staff_client, versions):
    active, candidate = versions  # no live images: nothing for a shadow pass to do

    response = activate(staff_client, candidate)

    assert [str(m) for m in response.context["messages"]] == [
        f"candidate (#{candidate.pk}) is now active for color, sensitive"
    ]
    assert {p.to_version_id for p in Promotion.objects.all()} == {candidate.pk}
    active.refresh_from_db()
    assert not active.heads.filter(is_active=True).exists()


def test_the_activate_action_shows_the_refusal(staff_client, versions):
    _, candidate = versions
    PlacementFactory(asset=ImageAssetFactory(), status=Placement.Status.OK)  # a live image it has not classified

    page = activate(staff_client, candidate).content.decode()

    assert "has had no shadow pass" in page
    assert f"manage.py shadow_pass {candidate.pk}" in page
    assert not Promotion.objects.exists()


@pytest.mark.parametrize("model", ["occlusionmap", "trainingjob", "shadowpass", "promotion"])
def test_the_loop_tables_are_shown_read_only(staff_client, versions, model):
    active, candidate = versions
    asset = ImageAssetFactory()
    OcclusionMap.objects.create(asset=asset, model_version=active, task="color", label="Red")
    TrainingJob.objects.create(task="color", parent=active, export_id=1)
    ShadowPass.objects.create(model_version=candidate, total=3)
    Promotion.objects.create(task="color", from_version=active, to_version=candidate)

    changelist = staff_client.get(reverse(f"admin:classifier_{model}_changelist"))
    assert changelist.status_code == 200
    row = changelist.context["cl"].result_list[0]
    change = staff_client.get(reverse(f"admin:classifier_{model}_change", args=[row.pk]))
    assert change.status_code == 200
    assert 'type="submit" value="Save"' not in change.content.decode()
    assert staff_client.get(reverse(f"admin:classifier_{model}_add")).status_code == 403
    assert staff_client.get(reverse(f"admin:classifier_{model}_delete", args=[row.pk])).status_code == 403


def test_register_starter_models_stores_each_models_figures():
    shipped = json.loads((STARTER_DIR / "metrics.json").read_text())["models"]
    ModelVersion.objects.all().delete()

    call_command("register_starter_models")

    for name in STARTERS:
        version = ModelVersion.objects.get(name__startswith=name)
        assert version.metrics, name
        assert version.metrics == shipped[name]


def test_register_starter_models_fills_the_figures_of_versions_registered_without_them():
    call_command("register_starter_models")
    ModelVersion.objects.update(metrics={})  # what every earlier install stored

    call_command("register_starter_models")

    assert not ModelVersion.objects.filter(metrics={}).exists()
