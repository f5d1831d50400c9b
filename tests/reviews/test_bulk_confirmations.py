"""A bulk "Set ... to" on the grid: images that have the label in effect already are confirmed (a human looked and
agreed), as the API records for the same request, and the screen says so before and after."""

import pytest
from django.urls import reverse

from reviews.models import ChangeSet, ManualFix
from tests.reviews.test_screens import make_sitemap

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(register_tiny):
    return register_tiny()  # color (red/green/blue), active


def test_setting_the_whole_filter_to_its_own_label_confirms_every_image(admin_client, model):
    sitemap, _ = make_sitemap(6, model)  # green, red, green, red, ...: the model's tags
    url = reverse("reviews:staff-fixes", args=[sitemap.pk])
    bulk = {"task": "color", "label": "green", "bulk_label": "Green", "bulk_task": "color", "select_all": "filter"}

    step = admin_client.post(url, bulk)
    html = step.content.decode()
    assert (step.context["bulk"].count, step.context["bulk"].already) == (3, 3)
    assert "<strong>3</strong> are Green already: they are confirmed" in html
    assert "Confirm 3 images as Green" in html
    assert not ManualFix.objects.exists()

    done = admin_client.post(url, {**bulk, "bulk_token": step.context["token"]}, HTTP_HX_REQUEST="true")

    fixes = ManualFix.objects.all()
    assert len(fixes) == 3
    assert all(fix.is_confirmation and fix.new_label == "Green" for fix in fixes)
    assert ChangeSet.objects.get().kind == "bulk"
    assert "3 tags confirmed (already that label: marked reviewed), 0 changed" in done.content.decode()
    assert done.context["page"].reviewed_count == 3  # the grid counts them reviewed


def test_a_bulk_of_a_selection_changes_some_and_confirms_the_rest(admin_client, model):
    sitemap, placements = make_sitemap(4, model)  # green, red, green, red
    url = reverse("reviews:staff-fixes", args=[sitemap.pk])

    done = admin_client.post(
        url,
        {"task": "color", "bulk_label": "Red", "bulk_task": "color", "selected": [p.pk for p in placements[:3]]},
        HTTP_HX_REQUEST="true",
    )

    fixes = {fix.asset_id: fix for fix in ManualFix.objects.all()}
    assert {asset: (f.old_label, f.new_label) for asset, f in fixes.items()} == {
        placements[0].asset_id: ("green", "Red"),
        placements[1].asset_id: ("Red", "Red"),  # the model said red: confirmed
        placements[2].asset_id: ("green", "Red"),
    }
    assert "1 tag confirmed (already that label: marked reviewed), 2 changed" in done.content.decode()


def test_a_confirmation_of_the_page_gives_way_to_the_bulk_label_on_the_same_tag(admin_client, model):
    sitemap, placements = make_sitemap(2, model)  # green, red
    url = reverse("reviews:staff-fixes", args=[sitemap.pk])

    admin_client.post(
        url,
        {
            "task": "color", "bulk_label": "Blue", "bulk_task": "color", "selected": [placements[0].pk],
            "confirm": [f"{placements[0].pk}:color:green", f"{placements[1].pk}:color:red"],
        },
    )  # fmt: skip

    labels = dict(ManualFix.objects.values_list("asset_id", "new_label"))
    assert labels == {placements[0].asset_id: "Blue", placements[1].asset_id: "Red"}
