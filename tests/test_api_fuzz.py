"""The API under schemathesis: for every operation of /api/schema/, as staff, as an advertiser's editor and as a
viewer, generated requests (valid and invalid) never get a server error, and every answer's status code, content
type, headers and body are the ones the schema declares, under every check schemathesis has (valid data accepted,
invalid data refused, auth enforced, undeclared methods 405, ...) and ours: nothing under /api/ answers HTML. Then
its state machine follows the schema's OpenAPI links (config.api.LINKS) through the workflows, every step under the
same checks. A check left out for one operation says why (EXCLUDED).

Bounds, so it stays a CI test (about a minute on 2 cores): 10 fuzzed examples per operation plus schemathesis'
deterministic examples and coverage cases; 20 state machine runs of at most 6 steps per role; derandomized (the same
cases every run), no per-example deadline. In-process (WSGI), inside the test's transaction: a Run or an export that
a request starts is enqueued on commit, which never comes, so no worker picks anything up and nothing is excluded.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import jsonschema
import pytest
import requests
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import CHECKS as REGISTERED_CHECKS
from schemathesis.checks import load_all_checks
from schemathesis.core.transport import Response, response_content_type

from catalog.models import TASK_LABELS, Membership, Placement, Run
from classifier.models import Classification, ModelHead, ModelVersion
from config.wsgi import application
from reviews.effective_store import effective_tags_refresh
from reviews.models import ManualFix
from reviews.services.fixes import canonical_label
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


@schemathesis.check
def api_answers_json(ctx, response, case):
    """No HTML (or any other page) under /api/: every answer is JSON, or a media type its operation declares (the
    schema endpoint's YAML)."""
    if not urlsplit(response.request.url).path.startswith("/api/"):
        return
    content_type = (response_content_type(response) or "").split(";")[0].strip().lower()
    declared = {
        media_type.lower()
        for definition in case.operation.definition.raw.get("responses", {}).values()
        for media_type in definition.get("content", {})
    }
    if response.status_code == 204 or content_type in {"application/json"} | declared:
        return
    raise AssertionError(f"{response.status_code} {content_type!r} under /api/ (expected JSON, or one of {declared})")


load_all_checks()
# Every check schemathesis has (its registry, so a check a new version adds runs too), ours included.
# object_level_authorization only acts with [auth.wfc] peers configured: tenant isolation has its own tests
# (tests/reviews/test_api_isolation.py).
CHECKS = [check for check in REGISTERED_CHECKS.get_all() if not isinstance(check, type)]
# A check left out for one operation, with the reason it does not hold there.
EXCLUDED: dict[str, dict[str, str]] = {
    "GET /api/sitemaps/{sitemap_id}/images/": {
        "positive_data_acceptance": "a cursor (after, before) is opaque: only one from an answer's next or previous is "
        "a page; any other string is a 400 that says to follow next",
    },
    "POST /api/sitemaps/{sitemap_id}/runs/": {
        "positive_data_acceptance": "a feed's rules (unique external ids, URLs a fetch can read, no NUL in any key) "
        "go past JSON Schema; an invalid feed is a 400 that lists every problem (README, scrape feed format)",
    },
}


def checks_for(case) -> list:
    excluded = EXCLUDED.get(case.operation.label, {})
    return [check for check in CHECKS if check.__name__ not in excluded]


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
    case.call_and_validate(headers={"Authorization": f"Token {world.token}"}, checks=checks_for(case))


# Workflows: schemathesis' state machine follows the schema's OpenAPI links (config.api.LINKS) from answer to
# request: list the sitemaps, start a Run, follow and cancel it; list a sitemap's images, fix one, read its history,
# revert the fix and revert the revert; start an export and follow it. Every step under every check.
class Workflows(schema.as_state_machine()):  # type: ignore[misc]
    token = ""

    def get_call_kwargs(self, case):
        return {"headers": {"Authorization": f"Token {self.token}"}}

    def validate_response(self, response, case, additional_checks=None, **kwargs):
        case.validate_response(
            response, checks=checks_for(case), headers=kwargs.get("headers"), transport_kwargs=kwargs or None,
            recorder=self.recorder,
        )  # fmt: skip


def test_the_api_workflows_follow_the_links_as_the_schema_says(world):
    CURRENT["world"] = world
    Workflows.token = world.token
    Workflows.run(
        settings=settings(
            max_examples=20,
            stateful_step_count=6,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
    )


def test_the_schema_links_every_workflow_step(editor_client):
    """The links the state machine follows are in the schema: each names an operation that exists."""
    document = editor_client.get("/api/schema/?format=json").json()
    operation_ids = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    links = {
        (path, name): link["operationId"]
        for path, item in document["paths"].items()
        for operation in item.values()
        for response in operation["responses"].values()
        for name, link in response.get("links", {}).items()
    }

    assert links[("/api/sitemaps/{sitemap_id}/runs/", "Run")] == "runs_retrieve"
    assert links[("/api/sitemaps/{sitemap_id}/runs/", "RunCancel")] == "runs_cancel_create"
    assert links[("/api/sitemaps/", "SitemapImages")] == "sitemaps_images_list"
    assert links[("/api/sitemaps/{sitemap_id}/images/", "ImageHistory")] == "images_history_retrieve"
    assert links[("/api/images/{image_id}/fixes/", "FixRevert")] == "fixes_revert_create"
    assert set(links.values()) <= operation_ids


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


def _schema(client) -> dict:
    return client.get("/api/schema/?format=json").json()


def test_a_fix_body_takes_exactly_the_labels_of_its_task(editor_client):
    """The schema says which labels each task takes (the fuzzer's valid body {"task": "color", "label":
    "keep_pending"} answered 400): any case, surrounding spaces, as the service reads them; not another task's."""
    document = _schema(editor_client)
    body = {**document["components"]["schemas"]["FixCreateInput"], "components": document["components"]}
    validator = jsonschema.Draft4Validator(body)

    for task, labels in TASK_LABELS.items():
        for label in labels:
            assert validator.is_valid({"task": task, "label": f" {label.upper()} "}), (task, label)
            assert canonical_label(task, f" {label.upper()} ") == label
    assert not validator.is_valid({"task": "color", "label": "Dealer"})
    assert not validator.is_valid({"task": "color", "label": "keep_pending"})
    assert not validator.is_valid({"task": "color", "label": "Red", "note": "a\x00b"})


def test_the_grid_filters_refuse_what_the_schema_does_not_take(editor_client):
    """The API's grid filters were read as the screen reads them (a malformed value is the default): the fuzzer's
    ?fixed=<garbage> was answered 200. Now a 400 that names the parameter; a blank text filter is no filter."""
    sitemap = SitemapFactory(advertiser=editor_client.advertiser)
    url = f"/api/sitemaps/{sitemap.pk}/images/"

    refused = [
        ("fixed=maybe", "fixed"),
        ("confidence_below=nan", "confidence_below"),
        ("confidence_below=2", "confidence_below"),
        ("sort=random", "sort"),
        ("ambiguous=x", "ambiguous"),
        ("task=shape", "task"),
    ]
    for query, field in refused:
        response = editor_client.get(f"{url}?{query}")
        assert response.status_code == 400, query
        assert field in response.json(), query
    assert editor_client.get(f"{url}?label=&listing=&fixed=yes&ambiguous=true&legacy=1").status_code == 200
    parameters = {
        p["name"]: p["schema"]
        for p in _schema(editor_client)["paths"]["/api/sitemaps/{sitemap_id}/images/"]["get"]["parameters"]
    }
    # A blank matches both options: anyOf, not drf-spectacular's oneOf (which refused the blank the API takes).
    assert parameters["listing"] == {
        "anyOf": [{"type": "string", "pattern": r"^[^\x00]*$"}, {"type": "string", "maxLength": 0}]
    }


def test_a_refusal_that_depends_on_the_stored_state_is_a_409(editor_client):
    """Well-formed requests the current state refuses answered 400, which says the request itself is wrong."""
    sitemap = SitemapFactory(advertiser=editor_client.advertiser)
    finished = RunFactory(sitemap=sitemap, status=Run.Status.SUCCEEDED)
    feedless = SitemapFactory(advertiser=editor_client.advertiser, kind="feed", url="")

    cancel = editor_client.post(f"/api/runs/{finished.pk}/cancel/")
    feed_to_a_sitemap = editor_client.post(
        f"/api/sitemaps/{sitemap.pk}/runs/",
        {"format": "imagetagger-feed/1", "listings": []},
        content_type="application/json",
    )
    no_feed = editor_client.post(f"/api/sitemaps/{feedless.pk}/runs/")

    assert [r.status_code for r in (cancel, feed_to_a_sitemap, no_feed)] == [409, 409, 409]
    assert cancel.json()["code"] == "run_refused"
    document = _schema(editor_client)["paths"]
    assert "409" in document["/api/runs/{run_id}/cancel/"]["post"]["responses"]
    assert "409" in document["/api/images/{image_id}/fixes/"]["post"]["responses"]


def test_an_export_takes_json_only_and_the_run_filter_a_positive_id(client):
    """A form cannot say null: the fuzzer's multipart export with extends=null answered 400 to a valid request."""
    staff = UserFactory(is_staff=True)
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {Token.objects.create(user=staff).key}"

    form = client.post("/api/exports/", {"task": "color", "extends": "null"})

    assert form.status_code == 415
    paths = _schema(client)["paths"]
    assert list(paths["/api/exports/"]["post"]["requestBody"]["content"]) == ["application/json"]
    sitemap = next(p for p in paths["/api/runs/"]["get"]["parameters"] if p["name"] == "sitemap")
    assert sitemap["schema"] == {"type": "integer", "minimum": 1}  # -14916609326325 was valid, and a 400


def test_the_json_check_refuses_a_page_under_api():
    """api_answers_json fails an HTML answer (Django's 500 or 400 page) under /api/, takes JSON, and the schema
    endpoint's own declared media types."""

    def answer(content_type: str, path: str) -> Response:
        request = requests.Request("GET", f"http://localhost{path}").prepare()
        headers = {"Content-Type": [content_type]}
        return Response(status_code=500, headers=headers, content=b"", request=request, elapsed=0, verify=True)

    image = schema["/api/images/{image_id}/"]["GET"].Case(path_parameters={"image_id": 1})
    schema_document = schema["/api/schema/"]["GET"].Case()

    with pytest.raises(AssertionError, match="text/html"):
        api_answers_json(None, answer("text/html; charset=utf-8", "/api/images/1/"), image)
    assert api_answers_json(None, answer("application/json", "/api/images/1/"), image) is None
    assert api_answers_json(None, answer("application/vnd.oai.openapi", "/api/schema/"), schema_document) is None
    with pytest.raises(AssertionError, match="text/html"):
        api_answers_json(None, answer("text/html", "/api/schema/"), schema_document)
