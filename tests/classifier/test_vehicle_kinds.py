"""Vehicle kinds (issue 20 §1, the part that needs no retrained model): a detector's classes map onto the kinds by
contract (a COCO detector's car, motorcycle, bus and truck by name, or the contract's `kinds`); a Run records the
kind of the biggest vehicle with its box, and the grid (a filter), the image page and the API show it."""

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import Membership, Placement
from classifier.contract import ContractError, contract_to_json, parse_contract
from classifier.models import Detection
from classifier.services.registry import model_register
from tests.classifier.onnx_builders import constant_detector, detector_contract, yolo_output
from tests.factories import MembershipFactory, SitemapFactory, UserFactory
from tests.reviews.test_effective_store import run_sync

COCO = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck"]


def test_a_coco_detectors_classes_map_onto_the_kinds_by_name_or_by_the_contract():
    contract = parse_contract(detector_contract(classes=COCO, vehicle_classes=[2, 3, 5, 7]))
    assert dict(contract.kinds) == {2: "car", 3: "motorcycle", 5: "bus_rv", 7: "truck"}
    assert (contract.kind_of(3), contract.kind_of(0)) == ("motorcycle", "")
    assert parse_contract(contract_to_json(contract)) == contract

    told = parse_contract({**detector_contract(classes=COCO, vehicle_classes=[2, 7]), "kinds": {"truck": "van_suv"}})
    assert dict(told.kinds) == {2: "car", 7: "van_suv"}
    one_class = parse_contract(detector_contract(classes=["vehicle"], vehicle_classes=[0]))
    assert one_class.kinds == ()  # a detector of one class, "vehicle", says no kind

    with pytest.raises(ContractError, match="'boat' is not a vehicle kind"):
        parse_contract({**detector_contract(classes=COCO, vehicle_classes=[2]), "kinds": {"car": "boat"}})
    with pytest.raises(ContractError, match="'tram' is not one of the classes"):
        parse_contract({**detector_contract(classes=COCO, vehicle_classes=[2]), "kinds": {"tram": "bus_rv"}})


@pytest.mark.django_db(transaction=True)
def test_a_run_records_the_biggest_vehicles_kind_and_the_screens_and_api_show_it(register_tiny, client):
    # A small car and a big motorcycle in every picture: the crop is the motorcycle's.
    boxes = [(8, 8, 6, 6, 2, 0.9), (16, 16, 20, 20, 3, 0.8)]
    contract = detector_contract(classes=COCO, vehicle_classes=[2, 3, 5, 7])
    model_register(data=constant_detector(yolo_output(boxes, classes=len(COCO))), contract=contract, activate=True)
    register_tiny(crop="vehicle")
    with InventoryServer(images=list(make_inventory_images(4, seed=9)), images_per_listing=2) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run_sync(sitemap)
    assert set(Detection.objects.values_list("kind", flat=True)) == {"motorcycle"}
    placements = list(Placement.objects.filter(listing__sitemap=sitemap).order_by("pk"))

    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    grid = reverse("reviews:staff-grid", args=[sitemap.pk])
    page = client.get(grid, {"task": "color", "kind": "motorcycle"}).content.decode()
    assert page.count('class="card') >= len(placements)
    assert all(f'data-id="{p.pk}"' in page for p in placements)
    page = client.get(grid, {"task": "color", "kind": "car"}).content.decode()
    assert not any(f'data-id="{p.pk}"' in page for p in placements)
    image = client.get(reverse("reviews:staff-image", args=[placements[0].pk])).content.decode()
    assert 'id="vehicle-kind"' in image
    assert "<strong>motorcycle</strong>" in image

    viewer = UserFactory()
    MembershipFactory(user=viewer, advertiser=sitemap.advertiser, role=Membership.Role.VIEWER)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=viewer).key}")
    items = api.get(f"/api/sitemaps/{sitemap.pk}/images/", {"kind": "motorcycle"}).json()["results"]
    assert {item["id"] for item in items} == {p.pk for p in placements}
    assert {item["vehicle_kind"] for item in items} == {"motorcycle"}
    assert api.get(f"/api/sitemaps/{sitemap.pk}/images/", {"kind": "car"}).json()["results"] == []
    assert api.get(f"/api/sitemaps/{sitemap.pk}/images/", {"kind": "boat"}).status_code == 400
    assert api.get(f"/api/images/{placements[0].pk}/").json()["vehicle_kind"] == "motorcycle"


@pytest.mark.django_db(transaction=True)
def test_exports_show_each_kinds_share_and_the_accuracy_chart_is_drawn_per_kind(register_tiny, client):
    from classifier.models import Classification
    from reviews.comparison import accuracy_over_time
    from reviews.exports.selectors import kind_shares
    from reviews.exports.services import export_build, export_create, export_freeze
    from reviews.models import ManualFix

    boxes = [(16, 16, 20, 20, 3, 0.8)]  # a motorcycle in every picture
    contract = detector_contract(classes=COCO, vehicle_classes=[2, 3, 5, 7])
    model_register(data=constant_detector(yolo_output(boxes, classes=len(COCO))), contract=contract, activate=True)
    register_tiny(crop="vehicle")
    with InventoryServer(images=list(make_inventory_images(6, seed=4)), images_per_listing=2) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run_sync(sitemap)
    staff = UserFactory(is_staff=True)
    labels = dict(Classification.objects.filter(task="color").values_list("asset_id", "label"))
    for placement in Placement.objects.filter(listing__sitemap=sitemap).order_by("pk")[:4]:
        other = "Red" if labels[placement.asset_id] != "red" else "Blue"
        ManualFix.objects.create(
            advertiser=sitemap.advertiser, asset=placement.asset, task="color", old_label=labels[placement.asset_id],
            new_label=other, source="staff", user=staff,
        )  # fmt: skip

    chart = accuracy_over_time(task="color", by="kind")
    [series] = chart["advertisers"]
    assert (series["name"], series["reviewed"], series["overturned"]) == ("motorcycle", 4, 4)
    assert accuracy_over_time(task="color")["advertisers"][0]["slug"] == sitemap.advertiser.slug

    export = export_create(task="color", enqueue=False)
    export_build(export_id=export.pk)
    export.refresh_from_db()
    export = export_freeze(export=export, keep_pending=True)
    [share] = kind_shares(export=export)
    assert (share.kind, share.items, share.items_share, share.live, share.live_share) == ("motorcycle", 4, 1.0, 6, 1.0)

    client.force_login(staff)
    page = client.get(reverse("reviews:staff-export", args=[export.pk])).content.decode()
    assert 'id="kind-shares"' in page
    assert 'data-kind="motorcycle"' in page
    page = client.get(reverse("reviews:staff-accuracy", args=["color"]), {"by": "kind"}).content.decode()
    assert "motorcycle" in page
