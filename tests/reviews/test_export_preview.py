"""The Exports form's preview says which export was used for training, whether or not the filter starts after it."""

import pytest
from django.urls import reverse
from django.utils import timezone

from reviews.models import DatasetExport
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True))
    return client


def since_text(response):
    html = response.content.decode()
    start = html.index('id="preview-since">') + len('id="preview-since">')
    return html[start : html.index("</span>", start)]


def test_the_preview_names_the_export_used_for_training(staff_client):
    preview = reverse("reviews:staff-export-preview")
    form = {"task": "image_type", "min_side": "64"}
    assert since_text(staff_client.get(preview, {**form, "since_last_training": "on"})) == (
        "every fix (no image_type export was used for training yet)"
    )
    now = timezone.now()
    used = DatasetExport.objects.create(
        task="image_type", status=DatasetExport.Status.FROZEN, params={}, sha256="0" * 64, frozen_at=now,
        used_for_training_at=now,
    )  # fmt: skip

    since_last = since_text(staff_client.get(preview, {**form, "since_last_training": "on"}))
    assert since_last.startswith("fixed since ")
    assert since_last.endswith(f"(export {used.pk} was used for training)")
    assert since_text(staff_client.get(reverse("reviews:staff-exports"))).endswith(
        f"(export {used.pk} was used for training)"
    )  # the page's first preview, the box checked by default
    every = since_text(staff_client.get(preview, form))  # the box unchecked: every fix
    assert every == f"every fix, also those before export {used.pk}, which was used for training"
    assert "no image_type export was used for training yet" not in every
    assert since_text(staff_client.get(preview, {**form, "task": "color", "since_last_training": "on"})) == (
        "every fix (no color export was used for training yet)"
    )
