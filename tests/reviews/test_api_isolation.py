"""Tenant isolation over the whole API: another advertiser's objects answer 404 with none of their data,
lists never show their rows, and nobody anonymous gets anything."""

import hashlib

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Membership, Run
from classifier.models import Classification, ModelHead, ModelVersion
from reviews.effective_store import effective_tags_refresh
from reviews.models import ManualFix
from tests.factories import (
    AdvertiserFactory,
    ImageAssetFactory,
    ListingFactory,
    MembershipFactory,
    PlacementFactory,
    RunFactory,
    SitemapFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

# What only advertiser B's rows hold: none of it may appear in an answer to A.
B_SECRETS = [b"b-secret", b"Burgundy", b"Orange", b"bravo-motors"]


def token_client(user):
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def world():
    """Advertisers A and B, each with a sitemap, an image, a classification, a fix and a Run. The two share a
    CDN picture (same asset) that B has fixed."""
    version = ModelVersion.objects.create(
        name="starter", kind="classifier", file="models/s.onnx", sha256=hashlib.sha256(b"s").hexdigest(),
        contract={}, status="active",
    )  # fmt: skip
    ModelHead.objects.create(model_version=version, task="color", output="color", labels=[], is_active=True)
    shared = ImageAssetFactory()
    Classification.objects.create(asset=shared, model_version=version, task="color", label="Blue", confidence=0.7)
    world = {}
    for name, slug in (("a", "alpha-cars"), ("b", "bravo-motors")):
        advertiser = AdvertiserFactory(slug=slug, name=slug)
        sitemap = SitemapFactory(advertiser=advertiser, url=f"https://{name}-secret.example/sitemap.xml")
        listing = ListingFactory(sitemap=sitemap, url=f"https://{name}-secret.example/car/1", title=f"{name}-secret")
        own = PlacementFactory(
            listing=listing, url=f"https://cdn.{name}-secret.example/1.jpg", status="ok", asset=ImageAssetFactory()
        )
        common = PlacementFactory(
            listing=listing, position=1, url=f"https://cdn.shared.example/{name}-secret.jpg", status="ok", asset=shared
        )
        user = MembershipFactory(advertiser=advertiser, role=Membership.Role.EDITOR, user__username=f"{name}-user").user
        world[name] = {
            "advertiser": advertiser, "sitemap": sitemap, "image": own, "common": common, "user": user,
            "run": RunFactory(sitemap=sitemap, status=Run.Status.SUCCEEDED),
        }  # fmt: skip
    Classification.objects.create(
        asset=world["b"]["image"].asset, model_version=version, task="color", label="Orange", confidence=0.8
    )
    for name, label in (("a", "Red"), ("b", "Burgundy")):
        world[name]["fix"] = ManualFix.objects.create(
            advertiser=world[name]["advertiser"], asset=shared, task="color", old_label="Blue", new_label=label,
            source="advertiser", user=world[name]["user"], note=f"{name}-secret note",
        )  # fmt: skip
    effective_tags_refresh()  # rows made here, not by the services: the stored tags follow
    return world


# (method, path, body) for every route that names one object; ids of B's objects fill the path.
OBJECT_ROUTES = [
    ("get", "/api/sitemaps/{sitemap}/images/", None),
    ("get", "/api/images/{image}/", None),
    ("get", "/api/images/{common}/", None),
    ("get", "/api/images/{image}/history/", None),
    ("get", "/api/images/{common}/history/", None),
    ("post", "/api/images/{image}/fixes/", {"task": "color", "label": "Red"}),
    ("post", "/api/fixes/{fix}/revert/", None),
    ("get", "/api/runs/?sitemap={sitemap}", None),
    ("post", "/api/sitemaps/{sitemap}/runs/", None),  # catalog's
    ("get", "/api/runs/{run}/", None),  # catalog's
]
LIST_ROUTES = ["/api/sitemaps/", "/api/runs/"]


def path_of(template, objects):
    ids = {key: objects[key].pk for key in ("sitemap", "image", "common", "fix", "run")}
    return template.format(**ids)


def call(client, method, path, body):
    return getattr(client, method)(path, body, format="json") if body else getattr(client, method)(path)


@pytest.mark.parametrize(("method", "template", "body"), OBJECT_ROUTES, ids=[r[0] + " " + r[1] for r in OBJECT_ROUTES])
def test_another_advertisers_objects_answer_404_with_none_of_their_data(world, method, template, body):
    fixes, runs = ManualFix.objects.count(), Run.objects.count()

    response = call(token_client(world["a"]["user"]), method, path_of(template, world["b"]), body)

    assert response.status_code == 404, response.content
    for secret in B_SECRETS:
        assert secret not in response.content
    assert (ManualFix.objects.count(), Run.objects.count()) == (fixes, runs)  # nothing written for B


@pytest.mark.parametrize(("method", "template", "body"), OBJECT_ROUTES, ids=[r[0] + " " + r[1] for r in OBJECT_ROUTES])
def test_a_viewer_of_one_advertiser_gets_404_not_403_for_another(world, method, template, body):
    viewer = MembershipFactory(advertiser=world["a"]["advertiser"], role=Membership.Role.VIEWER).user

    response = call(token_client(viewer), method, path_of(template, world["b"]), body)

    assert response.status_code == 404


@pytest.mark.parametrize(("method", "template", "body"), OBJECT_ROUTES, ids=[r[0] + " " + r[1] for r in OBJECT_ROUTES])
def test_the_owner_reaches_the_same_routes(world, method, template, body):
    response = call(token_client(world["b"]["user"]), method, path_of(template, world["b"]), body)

    assert response.status_code in (200, 201, 202), response.content


@pytest.mark.parametrize("path", LIST_ROUTES)
def test_lists_never_include_another_advertisers_rows(world, path):
    response = token_client(world["a"]["user"]).get(path)

    assert response.status_code == 200
    rows = response.json()["results"]
    assert len(rows) == 1
    assert rows[0].get("id", rows[0].get("sitemap")) == world["a"]["sitemap"].pk
    for secret in B_SECRETS:
        assert secret not in response.content


def test_a_shared_picture_shows_each_advertiser_only_its_own_tags_fixes_and_placements(world):
    a = world["a"]
    client = token_client(a["user"])

    images = client.get(f"/api/sitemaps/{a['sitemap'].pk}/images/").json()["results"]
    labels = {item["id"]: item["tags"]["color"]["label"] for item in images}
    assert labels == {a["image"].pk: None, a["common"].pk: "Red"}
    assert client.get(f"/api/sitemaps/{a['sitemap'].pk}/images/?task=color&label=Burgundy").json()["count"] == 0

    history = client.get(f"/api/images/{a['common'].pk}/history/")
    assert [fix["id"] for fix in history.json()["fixes"]] == [a["fix"].pk]
    assert [placement["id"] for placement in history.json()["placements"]] == [a["common"].pk]
    for secret in B_SECRETS:
        assert secret not in history.content


def test_staff_see_every_placement_of_a_picture_but_only_the_images_advertisers_fixes(world):
    staff = UserFactory(is_staff=True)

    history = token_client(staff).get(f"/api/images/{world['a']['common'].pk}/history/").json()

    placements = {placement["id"] for placement in history["placements"]}
    assert placements == {world["a"]["common"].pk, world["b"]["common"].pk}
    assert {placement["sitemap"]["advertiser"] for placement in history["placements"]} == {"alpha-cars", "bravo-motors"}
    assert [fix["new_label"] for fix in history["fixes"]] == ["Red"]
    assert len(token_client(staff).get("/api/sitemaps/").json()["results"]) == 2


def test_a_user_of_both_advertisers_sees_one_advertisers_history_per_image(world):
    both = world["a"]["user"]
    MembershipFactory(user=both, advertiser=world["b"]["advertiser"], role=Membership.Role.VIEWER)

    history = token_client(both).get(f"/api/images/{world['a']['common'].pk}/history/").json()

    assert [placement["id"] for placement in history["placements"]] == [world["a"]["common"].pk]
    assert [fix["new_label"] for fix in history["fixes"]] == ["Red"]
    refused = token_client(both).post(f"/api/fixes/{world['b']['fix'].pk}/revert/")
    assert refused.status_code == 403  # visible to a viewer of B, but not theirs to change


@pytest.mark.parametrize(
    ("method", "template", "body"),
    [*OBJECT_ROUTES, *(("get", path, None) for path in LIST_ROUTES)],
    ids=[r[0] + " " + r[1] for r in OBJECT_ROUTES] + [f"get {path}" for path in LIST_ROUTES],
)
def test_anonymous_gets_401_everywhere(world, method, template, body):
    response = call(APIClient(), method, path_of(template, world["b"]), body)

    assert response.status_code == 401
    for secret in B_SECRETS:
        assert secret not in response.content
