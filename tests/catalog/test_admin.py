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
