"""Stored files reach browsers through a view that checks the viewer's scope: anonymous visitors log in first,
other advertisers' users get a 404, exports and model files are for staff only."""

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from classifier.models import OcclusionMap
from tests.factories import ListingFactory, MembershipFactory, PlacementFactory, UserFactory

from .export_helpers import jpeg, stored_asset

pytestmark = pytest.mark.django_db


@pytest.fixture
def placement():
    return PlacementFactory(listing=ListingFactory(), status="ok", asset=stored_asset(1))


def login(client, user):
    client.force_login(user)
    return client


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_anonymous_visitors_log_in_first(client, placement):
    response = client.get(placement.asset.thumbnail.url)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_own_advertiser_sees_its_pictures_others_get_404(client, placement):
    asset = placement.asset
    own = MembershipFactory(advertiser=placement.listing.sitemap.advertiser).user
    stranger = MembershipFactory().user

    login(client, own)
    thumbnail = client.get(asset.thumbnail.url)
    original = client.get(asset.original.url)
    assert (thumbnail.status_code, thumbnail["Content-Type"]) == (200, "image/jpeg")
    assert body(original) == jpeg(1)
    assert "private" in thumbnail["Cache-Control"]

    login(client, stranger)
    assert client.get(asset.thumbnail.url).status_code == 404
    assert client.get(asset.original.url).status_code == 404


def test_staff_see_every_file_advertisers_no_exports_or_models(client, placement):
    default_storage.save("exports/export-1.zip", ContentFile(b"zip"))
    own = MembershipFactory(advertiser=placement.listing.sitemap.advertiser).user

    login(client, own)
    assert client.get("/media/exports/export-1.zip").status_code == 404
    assert client.get("/media/models/tiny.onnx").status_code == 404

    login(client, UserFactory(is_staff=True))
    assert client.get(placement.asset.thumbnail.url).status_code == 200
    download = client.get("/media/exports/export-1.zip")
    assert (download.status_code, body(download)) == (200, b"zip")
    assert download["Content-Disposition"].startswith("attachment")
    assert client.get("/media/exports/missing.zip").status_code == 404
    assert client.get("/media/../../etc/passwd").status_code == 404


def test_occlusion_heatmaps_of_own_pictures_only(client, placement, register_tiny):
    heatmap = OcclusionMap.objects.create(
        asset=placement.asset, model_version=register_tiny(), task="color", label="red", status="done"
    )
    heatmap.heatmap.save(f"{placement.asset.sha256[:2]}/{placement.asset.sha256}-1-color-red.png", ContentFile(b"p"))
    url = heatmap.heatmap.url

    login(client, MembershipFactory(advertiser=placement.listing.sitemap.advertiser).user)
    assert client.get(url).status_code == 200
    login(client, MembershipFactory().user)
    assert client.get(url).status_code == 404
