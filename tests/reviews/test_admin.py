"""The review tables in the admin: read-only (fixes are append-only), with the review decisions one filter away."""

import pytest
from django.urls import reverse

from catalog.models import Placement
from reviews.models import DatasetExport, ExportItem, ManualFix
from reviews.services.fixes import manual_fix_create, review_decision_record
from tests.factories import ImageAssetFactory, PlacementFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = UserFactory(username="admin", is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


@pytest.fixture
def fixes(staff):
    placement = PlacementFactory(asset=ImageAssetFactory(), status=Placement.Status.OK)
    fix = manual_fix_create(placement=placement, task="color", label="Blue", user=staff, source="staff")
    decision = review_decision_record(placement=placement, task="image_type", label="Dealer", user=staff)
    return placement, fix, decision


def test_manual_fixes_are_listed_filtered_and_never_written(client, fixes):
    _, fix, decision = fixes
    url = reverse("admin:reviews_manualfix_changelist")

    everything = client.get(url, {"q": "Blue"})
    assert [row.pk for row in everything.context["cl"].result_list] == [fix.pk]
    decisions = client.get(url, {"kind": "decision"})
    assert [row.pk for row in decisions.context["cl"].result_list] == [decision.pk]
    assert client.get(url, {"settles__exact": "1"}).context["cl"].result_count == 1

    change = client.get(reverse("admin:reviews_manualfix_change", args=[fix.pk]))
    assert change.status_code == 200
    assert 'value="Save"' not in change.content.decode()
    assert client.get(reverse("admin:reviews_manualfix_add")).status_code == 403
    assert client.get(reverse("admin:reviews_manualfix_delete", args=[fix.pk])).status_code == 403
    assert client.post(reverse("admin:reviews_manualfix_change", args=[fix.pk]), {"new_label": "Red"}).status_code in (
        302,
        403,
    )
    fix.refresh_from_db()
    assert fix.new_label == "Blue"


def test_exports_and_their_items_are_shown_read_only(client, fixes):
    placement, fix, _ = fixes
    export = DatasetExport.objects.create(task="color")
    item = ExportItem.objects.create(
        export=export, advertiser=placement.listing.sitemap.advertiser, asset=placement.asset, fix=fix,
        label="Blue", source="staff", split="train", group="g1",
    )  # fmt: skip

    for model, row in (("datasetexport", export), ("exportitem", item)):
        assert client.get(reverse(f"admin:reviews_{model}_changelist")).status_code == 200
        assert client.get(reverse(f"admin:reviews_{model}_change", args=[row.pk])).status_code == 200
        assert client.get(reverse(f"admin:reviews_{model}_add")).status_code == 403


def test_every_fix_kind_filter_answers(client, fixes):
    for kind in ("decision", "fix", "confirmation", "revert", "carried"):
        assert client.get(reverse("admin:reviews_manualfix_changelist"), {"kind": kind}).status_code == 200
    assert ManualFix.objects.count() == 2
