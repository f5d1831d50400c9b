import pytest
from django.urls import reverse

from tests.factories import ImageAssetFactory, MembershipFactory, PlacementFactory, RunFactory, UserFactory

pytestmark = pytest.mark.django_db

MODELS = ["advertiser", "membership", "sitemap", "listing", "imageasset", "placement", "run"]


@pytest.fixture
def staff_client(client):
    user = UserFactory(username="admin", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.mark.parametrize("model", MODELS)
def test_every_catalog_model_has_a_usable_admin(staff_client, model):
    placement = PlacementFactory(status="ok", asset=ImageAssetFactory())
    RunFactory(sitemap=placement.listing.sitemap, urls=3, downloaded=2, failed=1)
    MembershipFactory(advertiser=placement.listing.sitemap.advertiser)

    changelist = staff_client.get(reverse(f"admin:catalog_{model}_changelist"), {"q": "example"})
    assert changelist.status_code == 200
    obj = changelist.context["cl"].result_list[0] if changelist.context["cl"].result_list else None
    if obj is not None:
        assert staff_client.get(reverse(f"admin:catalog_{model}_change", args=[obj.pk])).status_code == 200


def test_placement_admin_shows_thumbnails(staff_client):
    placement = PlacementFactory(status="ok", asset=ImageAssetFactory())
    page = staff_client.get(reverse("admin:catalog_placement_changelist")).content.decode()
    assert f'src="/media/{placement.asset.thumbnail.name}"' in page


def test_the_classification_admin_shows_the_crop_over_the_image(staff_client, register_tiny):
    from classifier.models import Classification

    asset = ImageAssetFactory(width=800, height=600)
    result = Classification.objects.create(
        asset=asset, model_version=register_tiny(), task="color", label="red", confidence=0.9, margin=0.5,
        crop_box=[200, 150, 600, 450], crop_source="detector",
    )  # fmt: skip
    page = staff_client.get(reverse("admin:classifier_classification_change", args=[result.pk])).content.decode()
    assert "left:25.00%;top:25.00%;width:50.00%;height:50.00%" in page
