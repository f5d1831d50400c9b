"""The API under schemathesis: for every operation of /api/schema/, as staff, as an advertiser's editor and as a
viewer, generated requests (valid and invalid) never get a server error, and every answer's status code, content
type and body are the ones the schema declares.

Bounds, so it stays a CI test: 10 fuzzed examples per operation plus schemathesis' deterministic examples and
coverage cases, derandomized (the same cases every run), no per-example deadline. In-process (WSGI), inside the
test's transaction: a Run or an export that a request starts is enqueued on commit, which never comes, so no
worker picks anything up and nothing is excluded.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from catalog.models import Membership, Placement, Run
from classifier.models import Classification, ModelHead, ModelVersion
from config.wsgi import application
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

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class World:
    token: str
    ids: dict[str, list[int]]


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """The WSGI handler closes the database connection when a request ends; the test's transaction lives on it
    (Django's test client disconnects the same receiver)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(params=["staff", "editor", "viewer"])
def world(request) -> World:
    """One advertiser's data (sitemaps of each kind, images with tags, fixes, Runs), seen by the role under test.
    Real ids are mixed into the generated path parameters, so requests reach real objects as well as 404s."""
    version = ModelVersion.objects.create(
        name="starter", kind="classifier", file="models/s.onnx", sha256="0" * 64, contract={}, status="active"
    )
    ModelHead.objects.create(model_version=version, task="color", output="color", labels=[], is_active=True)
    membership = MembershipFactory(role=Membership.Role.EDITOR, user__username="fuzz-editor")
    advertiser = membership.advertiser
    sitemaps = [SitemapFactory(advertiser=advertiser), SitemapFactory(advertiser=advertiser, kind="feed", url="")]
    listing = ListingFactory(sitemap=sitemaps[0], external_id="VIN1", title="Blue hatchback")
    images = [
        PlacementFactory(listing=listing, position=n, status="ok", asset=ImageAssetFactory()) for n in range(2)
    ] + [PlacementFactory(listing=listing, position=2, status="failed", failure_reason="http_404")]
    Classification.objects.create(
        asset=images[0].asset, model_version=version, task="color", label="Blue", confidence=0.7, scores={"Blue": 0.7}
    )
    fix = ManualFix.objects.create(
        advertiser=advertiser, asset=images[1].asset, task="color", old_label="Blue", new_label="Red",
        source="advertiser", user=membership.user,
    )  # fmt: skip
    runs = [RunFactory(sitemap=sitemaps[0], status=Run.Status.SUCCEEDED)]
    users = {
        "staff": UserFactory(username="fuzz-staff", is_staff=True),
        "editor": membership.user,
        "viewer": MembershipFactory(advertiser=advertiser, role=Membership.Role.VIEWER).user,
    }
    token, _ = Token.objects.get_or_create(user=users[request.param])
    ids = {
        "sitemap_id": [s.pk for s in sitemaps],
        "image_id": [p.pk for p in images],
        "fix_id": [fix.pk],
        "run_id": [r.pk for r in runs],
    }
    return World(token=token.key, ids=ids)


# Loaded once at import (in-process, no database needed). schemathesis.pytest.from_fixture would load it per test,
# but its lazy loader does not run under pytest 9 (it sets Node._nodeid, which pytest 9 no longer has).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
CURRENT: dict[str, World] = {}  # the running test's world, for the hook


@schema.hook
def map_path_parameters(context, path_parameters):
    """Half the generated ids (the even ones) become ids of the world's objects: a function of the generated value,
    so Hypothesis replays and shrinks the same request."""
    ids = CURRENT["world"].ids if "world" in CURRENT else {}
    for name, value in list((path_parameters or {}).items()):
        if name in ids and isinstance(value, int) and not isinstance(value, bool) and value % 2 == 0:
            path_parameters[name] = ids[name][(value // 2) % len(ids[name])]
    return path_parameters


@schema.parametrize()
@settings(
    max_examples=10,
    derandomize=True,
    deadline=None,
    database=None,  # nothing written to .hypothesis/: derandomized runs need no memory of past failures
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
def test_the_api_answers_every_request_as_its_schema_says(case, world):
    CURRENT["world"] = world
    case.call_and_validate(headers={"Authorization": f"Token {world.token}"}, checks=CHECKS)


# What the fuzzer found, kept as plain regression tests.


@pytest.fixture
def editor_client(client):
    membership = MembershipFactory(role=Membership.Role.EDITOR)
    token, _ = Token.objects.get_or_create(user=membership.user)
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token.key}"
    client.advertiser = membership.advertiser
    return client


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=270637476586728947712&offset=-74556", "offset"),
        ("offset=99999999999999999999", "offset"),
        ("limit=0", "limit"),
        ("limit=-5", "limit"),
        ("limit=ten", "limit"),
        ("offset=1.5", "offset"),
    ],
)
def test_out_of_range_paging_is_a_400_that_says_what_to_send(editor_client, query, field):
    response = editor_client.get(f"/api/sitemaps/?{query}")

    assert response.status_code == 400
    assert response.json()[field][0].startswith("give an integer from")


def test_a_page_holds_at_most_500_images(editor_client):
    sitemap = SitemapFactory(advertiser=editor_client.advertiser)
    listing = ListingFactory(sitemap=sitemap)
    Placement.objects.bulk_create(
        Placement(listing=listing, url=f"https://cdn.example/{n}.jpg", position=n) for n in range(501)
    )
    effective_tags_refresh(sitemap_id=sitemap.pk)  # rows made here, not by the services: the stored tags follow

    page = editor_client.get(f"/api/sitemaps/{sitemap.pk}/images/?limit=100000").json()

    assert (page["count"], len(page["results"])) == (501, 500)
    assert "limit=500" in page["next"]
    huge = editor_client.get("/api/sitemaps/?limit=270637476586728947712")
    assert huge.status_code == 200  # clamped


def test_the_schema_documents_the_page_size_cap_and_every_error(editor_client):
    document = editor_client.get("/api/schema/?format=json").json()
    operations = [op for item in document["paths"].values() for op in item.values() if isinstance(op, dict)]

    limit = next(p for p in document["paths"]["/api/sitemaps/"]["get"]["parameters"] if p["name"] == "limit")
    assert "clamped to 500" in limit["description"]
    for operation in operations:
        for code in ("401", "403", "404", "429"):
            body = operation["responses"][code]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/Error"}, (operation["operationId"], code)
    run_start = document["paths"]["/api/sitemaps/{sitemap_id}/runs/"]["post"]["responses"]
    assert run_start["409"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Conflict"}
    assert run_start["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ValidationError"}


def test_options_on_the_docs_page_is_not_a_server_error(client):
    response = client.options("/api/docs/")

    assert response.status_code == 200
    assert "GET" in response["Allow"]


def test_a_path_under_api_that_matches_no_route_answers_json(editor_client):
    response = editor_client.get("/api/images/null,null/")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
