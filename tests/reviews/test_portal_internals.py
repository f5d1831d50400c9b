"""Advertisers see no internals on any portal screen: no SHA-256, no pHash, no crop coordinates, no model names, no
margins, no error of the pipeline. Staff keep them (the same pages for staff show them, so the checks can fail)."""

import pytest
from bs4 import BeautifulSoup
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from classifier.models import OcclusionMap
from reviews.effective_store import effective_tags_refresh
from tests.factories import ListingFactory, MembershipFactory, PlacementFactory, SitemapFactory, UserFactory

from .portal_helpers import advertiser_fix, image_type_model, staff_decision, tagged, unfetched

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
MODEL = "resnet-internal-v7"
CROP = "12, 34, 60, 50"  # the crop box the helpers record, as the staff image page prints it
MARGIN = ("0.62", "0.617")  # 0.6173, as floatformat prints it


@pytest.fixture
def world():
    model = image_type_model(MODEL)
    sitemap = SitemapFactory(name="Used cars")
    placement = tagged(sitemap, model, "Dealer")
    twin = PlacementFactory(listing=ListingFactory(sitemap=sitemap), asset=placement.asset, status="ok")  # a cluster
    broken = tagged(sitemap, model, None, error=f"model {MODEL} could not be loaded: onnx file models/{MODEL}.onnx")
    unfetched(sitemap)
    decided = tagged(sitemap, model, "Stock")
    advertiser_fix(decided, "Dealer")
    staff_decision(decided, "Stock")
    asset = placement.asset
    asset.cluster_id = asset.pk
    asset.save(update_fields=["cluster_id"])
    effective_tags_refresh(asset_ids=[asset.pk])
    heatmap = default_storage.save(f"occlusion/{asset.sha256[:2]}/{asset.sha256}-1-image_type-dealer.png",
                                   ContentFile(b"\x89PNG heatmap"))  # fmt: skip
    done = OcclusionMap.objects.create(
        asset=asset, model_version=model, task="image_type", label="Dealer", status="done", progress=1.0,
        heatmap=heatmap, crop_box=[12, 34, 60, 50],
        grid={"crop": [12, 34, 60, 50], "image_size": [96, 72], "patch": 7, "input_size": [53, 41],
              "max_drop": 0.25, "baseline": 0.8},
    )  # fmt: skip
    user = MembershipFactory(advertiser=sitemap.advertiser, user=UserFactory(username="dealer")).user
    return {"user": user, "sitemap": sitemap, "placement": placement, "twin": twin, "broken": broken, "map": done}


def portal_screens(client, world):
    """Every portal screen an advertiser reaches, rendered: pages, htmx partials and the occlusion map."""
    sitemap, placement, broken = world["sitemap"], world["placement"], world["broken"]
    grid = reverse("reviews:portal-grid", args=[sitemap.pk])
    occlusion = reverse("reviews:portal-occlusion", args=[placement.pk])
    pages = {
        "home": client.get(reverse("reviews:portal-home")),
        "sitemaps": client.get(reverse("reviews:portal-sitemaps")),
        "grid": client.get(grid),
        "grid, sorted by confidence": client.get(grid, {"sort": "confidence"}),
        "grid, failed (htmx)": client.get(grid, {"failed": "1"}, **HTMX),
        "image": client.get(reverse("reviews:portal-image", args=[placement.pk])),
        "image that failed": client.get(reverse("reviews:portal-image", args=[broken.pk])),
        "clusters": client.get(reverse("reviews:portal-clusters", args=[sitemap.pk])),
        "occlusion map": client.get(occlusion, {"map": world["map"].pk}, **HTMX),
        "occlusion refused": client.post(
            reverse("reviews:portal-occlusion", args=[broken.pk]), {"task": "image_type"}, **HTMX
        ),
        "changes": client.get(reverse("reviews:portal-changes")),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
    return {name: response.content.decode() for name, response in pages.items()}


def shown(html: str) -> str:
    """The text and attribute values of a page (inline styles left out: CSS says margin-top, not a model margin)."""
    soup = BeautifulSoup(html, "html.parser")
    values = [
        str(value)
        for tag in soup.find_all(True)
        for name, value in tag.attrs.items()
        if name != "style"
    ]  # fmt: skip
    return soup.get_text(" ") + " " + " ".join(values)


def internals(world) -> dict[str, str]:
    asset = world["placement"].asset
    return {"sha256": asset.sha256, "sha256 prefix": asset.sha256[:12], "pHash": asset.phash, "model name": MODEL,
            "crop": CROP}  # fmt: skip


def test_no_portal_screen_shows_internals(client, world):
    client.force_login(world["user"])

    for screen, html in portal_screens(client, world).items():
        for what, value in internals(world).items():
            assert value not in html, f"{what} on the portal's {screen}"
        text = shown(html).lower()
        for word in ("margin", "sha256", "sha-256", "phash"):
            assert word not in text, f"{word!r} on the portal's {screen}"
        for margin in MARGIN:
            assert margin not in text, f"the margin on the portal's {screen}"


def test_the_portal_still_shows_what_advertisers_need(client, world):
    client.force_login(world["user"])
    screens = portal_screens(client, world)

    assert "Dealer" in screens["image"]
    assert "the model could not tag this picture" in screens["image that failed"]
    assert "the model looked at the part in blue" in screens["image"]
    heatmap = f"{reverse('reviews:portal-heatmap', args=[world['placement'].pk])}?map={world['map'].pk}"
    assert heatmap in screens["occlusion map"]
    assert client.get(heatmap).status_code == 200
    assert "Cannot show where the model looks at this picture yet." in screens["occlusion refused"]


def test_staff_keep_the_internals(client, world):
    client.force_login(UserFactory(is_staff=True))
    placement = world["placement"]

    image = client.get(reverse("reviews:staff-image", args=[placement.pk])).content.decode()
    for what, value in internals(world).items():
        if what != "sha256":  # the page shows its first characters
            assert value in image, what
    assert "margin" in image
    assert MARGIN[0] in image
    grid = client.get(reverse("reviews:staff-grid", args=[world["sitemap"].pk])).content.decode()
    assert placement.asset.sha256 in grid  # pictures by their stored names
    assert "<option >margin</option>" in grid
    failed = client.get(reverse("reviews:staff-image", args=[world["broken"].pk])).content.decode()
    assert f"model {MODEL} could not be loaded" in failed
    occlusion = client.get(
        reverse("reviews:staff-occlusion", args=[placement.pk]), {"map": world["map"].pk}, **HTMX
    ).content.decode()
    assert f"Where {MODEL} looks" in occlusion
    assert world["map"].heatmap.url in occlusion
