"""The reviews API: sitemaps, images with effective tags and their sources, filters, fixes, history, tokens."""

import hashlib

import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Membership, Run
from classifier.models import Classification, ModelHead, ModelVersion
from reviews.effective_store import effective_tags_refresh
from reviews.models import ManualFix
from tests.factories import (
    ImageAssetFactory,
    ListingFactory,
    MembershipFactory,
    PlacementFactory,
    RunFactory,
    SitemapFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def token_client(user):
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def active_model(name="starter", tasks=("image_type", "color")):
    version = ModelVersion.objects.create(
        name=name,
        kind=ModelVersion.Kind.CLASSIFIER,
        file=f"models/{name}.onnx",
        sha256=hashlib.sha256(name.encode()).hexdigest(),
        contract={},
        status=ModelVersion.Status.ACTIVE,
    )
    for task in tasks:
        ModelHead.objects.create(model_version=version, task=task, output=task, labels=[], is_active=True)
    return version


def classify(asset, version, task, label, confidence=0.9, margin=0.5):
    scores = {label: confidence}
    return Classification.objects.create(
        asset=asset, model_version=version, task=task, label=label, confidence=confidence, margin=margin, scores=scores
    )


def image(listing, position=0, **kwargs):
    return PlacementFactory(listing=listing, position=position, status="ok", asset=ImageAssetFactory(), **kwargs)


@pytest.fixture
def editor():
    return MembershipFactory(role=Membership.Role.EDITOR).user


@pytest.fixture
def shop(editor):
    """An advertiser's sitemap with one image per way a tag can come about."""
    advertiser = editor.memberships.get().advertiser
    sitemap = SitemapFactory(advertiser=advertiser, name="Used cars")
    listing = ListingFactory(sitemap=sitemap, external_id="VIN1", title="Blue hatchback")
    painted = ListingFactory(sitemap=sitemap, external_id="VIN2", attributes={"color": "gray"})
    version = active_model()
    model = image(listing, 0)
    classify(model.asset, version, "image_type", "Dealer", 0.93, 0.8)
    classify(model.asset, version, "color", "Blue", 0.6, 0.1)
    fixed = image(listing, 1)
    classify(fixed.asset, version, "image_type", "Dealer", 0.55, 0.1)
    ManualFix.objects.create(
        advertiser=advertiser, asset=fixed.asset, task="image_type", old_label="Dealer", new_label="Stock",
        source=ManualFix.Source.STAFF, user=UserFactory(username="reviewer", is_staff=True),
    )  # fmt: skip
    scraped = image(painted, 0)
    classify(scraped.asset, version, "color", "Red", 0.99)
    broken = PlacementFactory(listing=listing, position=2, status="failed", failure_reason="timeout")
    crashed = image(listing, 3)
    Classification.objects.create(
        asset=crashed.asset, model_version=version, task="image_type", status="failed", error="onnx: bad input"
    )
    effective_tags_refresh(sitemap_id=sitemap.pk)  # rows made here, not by the services: the stored tags follow
    return {
        "sitemap": sitemap, "model": model, "fixed": fixed, "scraped": scraped, "broken": broken,
        "crashed": crashed, "version": version,
    }  # fmt: skip


def images_of(client, sitemap, query=""):
    response = client.get(f"/api/sitemaps/{sitemap.pk}/images/{query}")
    assert response.status_code == 200, response.content
    return {item["id"]: item for item in response.json()["results"]}


def test_sitemaps_list_their_last_run(editor, shop):
    run = RunFactory(sitemap=shop["sitemap"], status=Run.Status.SUCCEEDED)

    response = token_client(editor).get("/api/sitemaps/")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    item = body["results"][0]
    assert item["id"] == shop["sitemap"].pk
    assert item["advertiser"] == shop["sitemap"].advertiser.slug
    assert (item["name"], item["kind"], item["schedule"]) == ("Used cars", "sitemap", "nightly")
    assert item["tasks_enabled"] == ["image_type", "color", "intent", "sensitive"]
    assert item["last_run"] == {"id": run.pk, "status": "succeeded", "finished_at": None}


def test_images_carry_every_tag_with_where_it_came_from(editor, shop):
    items = images_of(token_client(editor), shop["sitemap"])

    assert list(items) == [shop[name].pk for name in ("model", "fixed", "broken", "crashed", "scraped")]
    model = items[shop["model"].pk]
    assert model["url"] == shop["model"].url
    assert model["listing"]["external_id"] == "VIN1"
    assert model["listing"]["title"] == "Blue hatchback"
    assert model["asset"]["sha256"] == shop["model"].asset.sha256
    # Links a token client can follow: signed (tests/reviews/test_signed_media.py)
    assert model["asset"]["thumbnail"].startswith("http://testserver/media/signed/")
    assert model["asset"]["original"].startswith("http://testserver/media/signed/")
    assert model["tags"]["image_type"] == {
        "label": "Dealer", "source": "model", "confidence": 0.93, "margin": 0.8, "fixed_by": "", "fix_source": "",
        "fix_id": None, "reason": "", "model_version": shop["version"].pk,
    }  # fmt: skip
    assert model["tags"]["intent"]["source"] == "unknown"
    assert model["tags"]["intent"]["reason"] == "no active model"

    fixed = items[shop["fixed"].pk]["tags"]["image_type"]
    assert (fixed["label"], fixed["source"], fixed["fixed_by"], fixed["fix_source"]) == (
        "Stock", "fix", "reviewer", "staff"
    )  # fmt: skip
    assert items[shop["scraped"].pk]["tags"]["color"]["label"] == "Grey"  # the scrape's color beats the model
    assert items[shop["scraped"].pk]["tags"]["color"]["source"] == "scrape"

    broken = items[shop["broken"].pk]
    assert (broken["asset"], broken["status"], broken["failure_reason"]) == (None, "failed", "timeout")
    assert (broken["tags"]["image_type"]["label"], broken["tags"]["image_type"]["source"]) == (None, "failed")
    assert broken["tags"]["image_type"]["reason"] == "image: timeout"
    crashed = items[shop["crashed"].pk]["tags"]["image_type"]
    assert (crashed["label"], crashed["source"], crashed["reason"]) == (None, "failed", "onnx: bad input")


def test_filters_are_the_grids(editor, shop):
    client = token_client(editor)

    assert list(images_of(client, shop["sitemap"], "?task=image_type&label=dealer")) == [shop["model"].pk]
    assert list(images_of(client, shop["sitemap"], "?source=fix")) == [shop["fixed"].pk]
    assert list(images_of(client, shop["sitemap"], "?fixed=yes")) == [shop["fixed"].pk]
    assert list(images_of(client, shop["sitemap"], "?failed=1")) == [shop["broken"].pk, shop["crashed"].pk]
    assert list(images_of(client, shop["sitemap"], "?task=color&source=scrape")) == [shop["scraped"].pk]
    assert list(images_of(client, shop["sitemap"], "?listing=VIN2")) == [shop["scraped"].pk]
    assert list(images_of(client, shop["sitemap"], "?task=color&confidence_below=0.7")) == [shop["model"].pk]


def test_pages_follow_cursors_as_the_grid_does(editor, shop):
    client = token_client(editor)
    every = [item["id"] for item in client.get(f"/api/sitemaps/{shop['sitemap'].pk}/images/").json()["results"]]
    assert len(every) == 5

    first = client.get(f"/api/sitemaps/{shop['sitemap'].pk}/images/?limit=2").json()
    assert (first["count"], first["previous"]) == (5, None)
    assert [item["id"] for item in first["results"]] == every[:2]
    assert "after=" in first["next"]
    assert "limit=2" in first["next"]
    second = client.get(first["next"]).json()
    assert [item["id"] for item in second["results"]] == every[2:4]
    third = client.get(second["next"]).json()
    assert ([item["id"] for item in third["results"]], third["next"]) == (every[4:], None)
    back = client.get(third["previous"]).json()
    assert [item["id"] for item in back["results"]] == every[2:4]
    # A cursor is the sort key of a row: one of another sort, or none at all, is a 400 that says what to do.
    for query in ("after=bogus", f"sort=newest&{first['next'].split('?')[1]}", "offset=2", "after=a&before=b"):
        response = client.get(f"/api/sitemaps/{shop['sitemap'].pk}/images/?{query}")
        assert response.status_code == 400, query
    assert "follow `next`" in str(client.get(f"/api/sitemaps/{shop['sitemap'].pk}/images/?offset=2").json())
    assert client.get(f"/api/sitemaps/{shop['sitemap'].pk}/images/?offset=0").status_code == 200


def test_legacy_output_maps_failures_to_the_old_defaults_only_on_request(editor, shop):
    client = token_client(editor)

    honest = images_of(client, shop["sitemap"])[shop["broken"].pk]["tags"]
    legacy = images_of(client, shop["sitemap"], "?legacy=1")[shop["broken"].pk]["tags"]

    assert (honest["image_type"]["label"], honest["color"]["label"]) == (None, None)
    assert (legacy["image_type"]["label"], legacy["color"]["label"]) == ("Placeholder", None)
    assert legacy["image_type"]["source"] == "failed"  # still says what happened
    crashed = client.get(f"/api/images/{shop['crashed'].pk}/?legacy=1").json()["tags"]
    assert crashed["image_type"]["label"] == "Placeholder"
    model = images_of(client, shop["sitemap"], "?legacy=1")[shop["model"].pk]["tags"]
    assert (model["image_type"]["label"], model["color"]["label"]) == ("Dealer", "Blue")  # real results untouched


def test_one_image_has_its_tags(editor, shop):
    response = token_client(editor).get(f"/api/images/{shop['model'].pk}/")

    assert response.status_code == 200
    assert response.json()["tags"]["color"]["label"] == "Blue"
    assert response.json()["listing"]["id"] == shop["model"].listing_id


def test_a_posted_fix_changes_the_effective_tag_and_is_history(editor, shop):
    client = token_client(editor)
    placement = shop["model"]

    response = client.post(
        f"/api/images/{placement.pk}/fixes/", {"task": "color", "label": "red", "note": "see the doors"}, format="json"
    )

    assert response.status_code == 201, response.content
    fix = response.json()
    assert (fix["task"], fix["old_label"], fix["new_label"]) == ("color", "Blue", "Red")
    assert (fix["source"], fix["user"], fix["note"]) == ("advertiser", editor.username, "see the doors")
    tag = client.get(f"/api/images/{placement.pk}/").json()["tags"]["color"]
    assert (tag["label"], tag["source"], tag["fix_id"], tag["fixed_by"]) == ("Red", "fix", fix["id"], editor.username)

    again = client.post(f"/api/images/{placement.pk}/fixes/", {"task": "color", "label": "Red"}, format="json")
    # The label in effect again: a confirmation is recorded (history, and a label the export can use).
    assert again.status_code == 201, again.content
    confirmed = again.json()
    assert (confirmed["old_label"], confirmed["new_label"], confirmed["confirmation"]) == ("Red", "Red", True)
    assert fix["confirmation"] is False
    assert ManualFix.objects.filter(asset=placement.asset).count() == 2

    history = client.get(f"/api/images/{placement.pk}/history/").json()
    assert [(f["id"], f["new_label"]) for f in history["fixes"]] == [(confirmed["id"], "Red"), (fix["id"], "Red")]
    assert {(c["task"], c["label"], c["model_version"]["name"]) for c in history["classifications"]} == {
        ("image_type", "Dealer", "starter"), ("color", "Blue", "starter"),
    }  # fmt: skip
    assert history["classifications"][0]["scores"]
    assert [p["id"] for p in history["placements"]] == [placement.pk]
    assert history["image"]["tags"]["color"]["label"] == "Red"


def test_staff_fixes_are_recorded_as_api_fixes(shop):
    staff = UserFactory(is_staff=True)

    response = token_client(staff).post(
        f"/api/images/{shop['model'].pk}/fixes/", {"task": "image_type", "label": "Stock"}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["source"] == "api"


def test_a_revert_restores_what_was_in_effect_and_keeps_both(editor, shop):
    client = token_client(editor)
    placement = shop["fixed"]
    fix = ManualFix.objects.get(asset=placement.asset)

    response = client.post(f"/api/fixes/{fix.pk}/revert/")

    # No fix was in effect before it: the revert withdraws it, and the model's Dealer is the tag again.
    assert response.status_code == 201, response.content
    assert [response.json()[name] for name in ("new_label", "withdraws", "reverts")] == ["", True, fix.pk]
    tag = client.get(f"/api/images/{placement.pk}/").json()["tags"]["image_type"]
    assert (tag["label"], tag["source"]) == ("Dealer", "model")
    history = client.get(f"/api/images/{placement.pk}/history/").json()["fixes"]
    assert [(f["new_label"], f["withdraws"]) for f in history] == [("", True), ("Stock", False)]
    again = client.post(f"/api/fixes/{response.json()['id']}/revert/")  # a revert of the withdrawal: Stock again
    assert [again.json()[name] for name in ("new_label", "withdraws")] == ["Stock", False]
    assert client.get(f"/api/images/{placement.pk}/").json()["tags"]["image_type"]["label"] == "Stock"


def test_a_fix_that_replaced_no_label_is_withdrawn_by_a_revert(editor, shop):
    client = token_client(editor)
    created = client.post(f"/api/images/{shop['broken'].pk}/fixes/", {"task": "color", "label": "Red"}, format="json")
    assert created.status_code == 409  # no picture yet: what the image is refuses it
    assert "no downloaded picture" in created.json()["detail"]
    first = client.post(f"/api/images/{shop['model'].pk}/fixes/", {"task": "intent", "label": "home & garden"})
    assert first.status_code == 201

    response = client.post(f"/api/fixes/{first.json()['id']}/revert/")

    assert response.status_code == 201
    assert (response.json()["withdraws"], response.json()["old_label"]) == (True, "Home & Garden")
    assert client.get(f"/api/images/{shop['model'].pk}/").json()["tags"]["intent"]["source"] != "fix"


def test_viewers_read_but_cannot_fix(shop):
    viewer = MembershipFactory(advertiser=shop["sitemap"].advertiser, role=Membership.Role.VIEWER).user
    client = token_client(viewer)
    fix = ManualFix.objects.get()

    assert client.get(f"/api/images/{shop['model'].pk}/").status_code == 200
    response = client.post(f"/api/images/{shop['model'].pk}/fixes/", {"task": "color", "label": "Red"}, format="json")
    assert response.status_code == 403
    assert "editors" in response.json()["detail"]
    assert client.post(f"/api/fixes/{fix.pk}/revert/").status_code == 403
    assert ManualFix.objects.count() == 1


def test_an_invalid_label_or_task_is_refused_with_a_clear_message(editor, shop):
    client = token_client(editor)
    url = f"/api/images/{shop['model'].pk}/fixes/"

    response = client.post(url, {"task": "color", "label": "Mauve"}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("'Mauve' is not a color label: Black, Blue,")

    response = client.post(url, {"task": "mood", "label": "Red"}, format="json")
    assert response.status_code == 400
    assert "task" in response.json()
    assert client.post(url, {"task": "color"}, format="json").json() == {"label": ["This field is required."]}
    assert not ManualFix.objects.filter(asset=shop["model"].asset).exists()


def test_a_page_costs_the_same_queries_whatever_its_size(editor, django_assert_max_num_queries):
    advertiser = editor.memberships.get().advertiser
    sitemap = SitemapFactory(advertiser=advertiser)
    version = active_model()
    reviewer = UserFactory(is_staff=True)
    for number in range(50):
        placement = image(ListingFactory(sitemap=sitemap, attributes={"color": "red"} if number % 3 else {}))
        classify(placement.asset, version, "image_type", "Dealer")
        if number % 2:
            ManualFix.objects.create(
                advertiser=advertiser, asset=placement.asset, task="image_type", new_label="Stock", user=reviewer,
                source="staff",
            )  # fmt: skip
    effective_tags_refresh(sitemap_id=sitemap.pk)
    client = token_client(editor)

    # token, sitemap, counts, the page's keys, its placements, active heads, classifications, fixes, vehicle kinds
    # (+ the filter's active head): the same for any page size, and for a page after a cursor as for the first
    for limit in (5, 50):
        with django_assert_max_num_queries(10):
            response = client.get(f"/api/sitemaps/{sitemap.pk}/images/?limit={limit}&source=fix")
        assert len(response.json()["results"]) == min(limit, 25)
        with django_assert_max_num_queries(9):
            response = client.get(f"/api/sitemaps/{sitemap.pk}/images/?limit={limit}")
        assert len(response.json()["results"]) == limit
    following = client.get(f"/api/sitemaps/{sitemap.pk}/images/?limit=5").json()["next"]
    with django_assert_max_num_queries(9):
        response = client.get(following)
    assert len(response.json()["results"]) == 5


def test_runs_list_newest_first_and_per_sitemap(editor, shop):
    older = RunFactory(sitemap=shop["sitemap"], status=Run.Status.SUCCEEDED)
    other_sitemap = SitemapFactory(advertiser=shop["sitemap"].advertiser)
    newer = RunFactory(sitemap=other_sitemap, status=Run.Status.QUEUED)
    client = token_client(editor)

    assert [run["run"] for run in client.get("/api/runs/").json()["results"]] == [newer.pk, older.pk]
    only = client.get(f"/api/runs/?sitemap={shop['sitemap'].pk}").json()["results"]
    assert [(run["run"], run["status"]) for run in only] == [(older.pk, "succeeded")]
    assert client.get("/api/runs/?sitemap=abc").status_code == 400
    assert client.get(f"/api/runs/{older.pk}/").json()["run"] == older.pk  # catalog's route is untouched


def test_create_api_token_prints_the_same_token_every_time(capsys):
    user = UserFactory(username="scraper")

    call_command("create_api_token", "scraper")
    first = capsys.readouterr().out.strip()
    call_command("create_api_token", "scraper")

    assert first == Token.objects.get(user=user).key
    assert capsys.readouterr().out.strip() == first
    assert token_client(user).get("/api/sitemaps/").status_code == 200
    with pytest.raises(CommandError, match="no user 'nobody'"):
        call_command("create_api_token", "nobody")


def test_the_openapi_schema_documents_the_api(editor):
    response = token_client(editor).get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "post" in paths["/api/images/{image_id}/fixes/"]
    for path in (
        "/api/sitemaps/", "/api/sitemaps/{sitemap_id}/images/", "/api/images/{image_id}/",
        "/api/images/{image_id}/history/", "/api/fixes/{fix_id}/revert/", "/api/runs/",
        "/api/sitemaps/{sitemap_id}/runs/", "/api/runs/{run_id}/",
    ):  # fmt: skip
        assert path in paths
    fix_input = response.json()["components"]["schemas"]["FixCreateInput"]
    assert set(fix_input["required"]) == {"task", "label"}
    parameters = {p["name"] for p in paths["/api/sitemaps/{sitemap_id}/images/"]["get"]["parameters"]}
    assert {"task", "label", "source", "fixed", "legacy", "limit", "offset"} <= parameters


def test_a_page_serializes_its_tags_with_one_serializer(editor, shop, monkeypatch):
    """A serializer made per tag deep-copies its fields each time: two thirds of a page's time at 500 images."""
    from reviews import apis

    made = []
    original = apis.ImageTagSerializer.__init__

    def counted(self, *args, **kwargs):
        made.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(apis.ImageTagSerializer, "__init__", counted)
    body = token_client(editor).get(f"/api/sitemaps/{shop['sitemap'].pk}/images/").json()

    assert sum(len(item["tags"]) for item in body["results"]) >= 5 * 4
    assert len(made) == 1
