"""The image page's "Where does the model look?": staff and portal request a map, follow its progress and see
the heatmap over the crop; other advertisers' users get a 404, images without an answer a clear error."""

import pytest
from django.urls import reverse

from classifier.models import OcclusionMap
from classifier.services.inference import active_models, classify_assets, forget_sessions
from classifier.services.occlusion import occlusion_compute
from classifier.services.registry import model_register
from tests.classifier.onnx_builders import region_classifier, region_contract
from tests.classifier.test_occlusion import corner_picture, stored_asset
from tests.factories import ListingFactory, MembershipFactory, PlacementFactory, UserFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def placement():
    forget_sessions()
    model_register(data=region_classifier(), contract=region_contract(), activate=True)
    asset = stored_asset(corner_picture(size=128, corner=32))
    classify_assets([asset], active_models())
    yield PlacementFactory(listing=ListingFactory(), status="ok", asset=asset)
    forget_sessions()


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True))
    return client


def test_the_image_page_offers_the_occlusion_map(staff_client, placement):
    page = staff_client.get(reverse("reviews:staff-image", args=[placement.pk])).content.decode()

    assert "Where does the model look?" in page
    assert f'hx-post="{reverse("reviews:staff-occlusion", args=[placement.pk])}"' in page
    assert '<option value="image_type">' in page


def test_staff_request_shows_progress_then_the_heatmap_over_the_crop(
    staff_client, placement, django_capture_on_commit_callbacks
):
    url = reverse("reviews:staff-occlusion", args=[placement.pk])
    with django_capture_on_commit_callbacks() as enqueued:
        queued = staff_client.post(url, {"task": "image_type"}, **HTMX)

    assert queued.status_code == 200
    assert len(enqueued) == 1
    row = OcclusionMap.objects.get()
    html = queued.content.decode()
    assert f'hx-get="{url}?map={row.pk}" hx-trigger="every 1s"' in html  # polls itself while queued
    assert "Queued" in html
    assert "<progress" in html

    occlusion_compute(map_id=row.pk)
    row.refresh_from_db()
    done = staff_client.get(url, {"map": row.pk}, **HTMX).content.decode()

    assert "every 1s" not in done  # finished: no more polling
    assert row.heatmap.url in done
    assert placement.asset.original.url in done
    assert "Placeholder" in done
    assert "largest drop" in done
    assert "aspect-ratio:128/128" in done
    again = staff_client.post(url, {"task": "image_type"}, **HTMX).content.decode()
    assert row.heatmap.url in again  # the cached map, at once
    assert OcclusionMap.objects.count() == 1


def test_an_image_without_a_picture_gets_a_clear_error(staff_client, placement):
    failed = PlacementFactory(listing=placement.listing, position=1, status="failed", failure_reason="http_404")
    url = reverse("reviews:staff-occlusion", args=[failed.pk])

    shown = staff_client.post(url, {"task": "image_type"}, **HTMX)
    assert shown.status_code == 200  # htmx swaps the message in place
    assert "failed to download (http_404)" in shown.content.decode()
    assert staff_client.post(url, {"task": "image_type"}).status_code == 400
    no_model = staff_client.post(reverse("reviews:staff-occlusion", args=[placement.pk]), {"task": "color"}, **HTMX)
    assert "no active model tags color" in no_model.content.decode()


def test_the_portal_shows_maps_of_its_own_images_only(client, placement, django_capture_on_commit_callbacks):
    stranger = MembershipFactory().user  # a user of another advertiser
    client.force_login(stranger)
    url = reverse("reviews:portal-occlusion", args=[placement.pk])

    assert client.post(url, {"task": "image_type"}, **HTMX).status_code == 404
    assert not OcclusionMap.objects.exists()

    owner = MembershipFactory(advertiser=placement.listing.sitemap.advertiser, role="editor").user
    client.force_login(owner)
    with django_capture_on_commit_callbacks():
        assert client.post(url, {"task": "image_type"}, **HTMX).status_code == 200
    row = OcclusionMap.objects.get()
    assert client.get(url, {"map": row.pk}, **HTMX).status_code == 200
    viewer = MembershipFactory(advertiser=placement.listing.sitemap.advertiser, role="viewer").user
    client.force_login(viewer)  # a viewer follows the map an editor asked for
    assert client.get(url, {"map": row.pk}, **HTMX).status_code == 200

    client.force_login(stranger)
    assert client.get(url, {"map": row.pk}, **HTMX).status_code == 404
    other = PlacementFactory(listing=ListingFactory(sitemap__advertiser=stranger.memberships.get().advertiser))
    forged = reverse("reviews:portal-occlusion", args=[other.pk])
    assert client.get(forged, {"map": row.pk}, **HTMX).status_code == 404  # a map of someone else's picture


def test_staff_screens_need_staff(client, placement):
    client.force_login(UserFactory())
    response = client.post(reverse("reviews:staff-occlusion", args=[placement.pk]), {"task": "image_type"})
    assert response.status_code == 403  # logged in, not staff: refused (anonymous visitors log in first)
