"""POST /api/exports/ and GET /api/exports/<id>/: staff only (advertisers get 404), 202 then follow it."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from reviews.exports import export_freeze
from reviews.models import DatasetExport
from reviews.tasks import export_build_task
from tests.factories import MembershipFactory, SitemapFactory, UserFactory

from .export_helpers import label, show, stored_asset

pytestmark = pytest.mark.django_db


def client_of(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def sitemap():
    sitemap = SitemapFactory()
    for i in range(6):
        label(show(sitemap, stored_asset(i)), ("Dealer", "Stock", "Dealer")[i % 3])
    return sitemap


def test_staff_start_an_export_and_follow_it_to_frozen(sitemap, django_capture_on_commit_callbacks):
    staff = client_of(UserFactory(is_staff=True))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff.post(
            "/api/exports/", {"task": "image_type", "advertisers": [sitemap.advertiser.slug]}, format="json"
        )
    assert response.status_code == 202, response.content
    export = DatasetExport.objects.get()
    url = f"http://testserver{reverse('reviews_api:export-detail', args=[export.pk])}"
    assert response.json() == {"id": export.pk, "status": "building", "url": url}
    assert response["Location"] == url
    assert len(callbacks) == 1  # building in the background, after commit

    building = staff.get(url).json()
    assert (building["status"], building["items"], building["file"]) == ("building", 0, None)

    export_build_task(export.pk)
    built = staff.get(url).json()
    assert (built["status"], built["progress"], built["items"]) == ("review", 1.0, 6)
    assert [row["label"] for row in built["labels"]] == ["Dealer", "Stock"]
    assert built["imbalance"] == 2.0

    frozen = export_freeze(export=export)
    body = staff.get(url).json()
    assert body["status"] == "frozen"
    assert body["sha256"] == frozen.sha256
    assert body["file"] == f"http://testserver{frozen.file.url}"
    assert body["counts"] == frozen.counts
    assert body["excluded"] == {}
    assert body["label_issues"] == 0


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"task": "image_type", "advertisers": ["nobody"]}, "unknown advertiser: nobody"),
        ({"task": "color"}, "no labelled images match these filters"),
        ({"task": "image_type", "extends": 12345}, "export 12345 does not exist"),
    ],
)
def test_what_the_data_refuses_answers_409_with_the_reason(sitemap, body, detail):
    response = client_of(UserFactory(is_staff=True)).post("/api/exports/", body, format="json")
    assert response.status_code == 409
    assert detail in response.json()["detail"]
    assert not DatasetExport.objects.exists()


def test_invalid_fields_answer_400():
    staff = client_of(UserFactory(is_staff=True))
    response = staff.post("/api/exports/", {"task": "shape", "min_side": 0, "sources": ["carried"]}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"task", "min_side", "sources"}


def test_advertiser_users_get_404(sitemap):
    export = DatasetExport.objects.create(task="image_type")
    member = MembershipFactory(advertiser=sitemap.advertiser).user
    client = client_of(member)
    assert client.post("/api/exports/", {"task": "image_type"}, format="json").status_code == 404
    assert client.get(f"/api/exports/{export.pk}/").status_code == 404
    assert not DatasetExport.objects.exclude(pk=export.pk).exists()
    assert APIClient().get(f"/api/exports/{export.pk}/").status_code in (401, 403)


def test_the_schema_documents_the_export_routes():
    schema = client_of(UserFactory(is_staff=True)).get("/api/schema/", {"format": "json"}).json()
    assert "202" in schema["paths"]["/api/exports/"]["post"]["responses"]
    assert "/api/exports/{export_id}/" in schema["paths"]
    assert "DatasetExport" in schema["components"]["schemas"]
