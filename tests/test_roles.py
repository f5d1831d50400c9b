"""Roles hold: a viewer of an advertiser can never write. Every URL pattern of the project is enumerated (so a route
added later is covered without touching this file), and every write method (POST, PUT, PATCH, DELETE) is sent to
it as a viewer, on the viewer's own advertiser's objects: the answer is 403 (405 where the route takes no such
method), and nothing is written."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from django.apps import apps
from django.contrib.sessions.models import Session
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.authtoken.models import Token

from catalog.models import Membership, Run
from classifier.models import ModelHead, ModelVersion, ScopedHead
from reviews.media_views import signed_media_url
from reviews.models import ChangeSet, ManualFix
from tests.factories import (
    ImageAssetFactory,
    ListingFactory,
    MembershipFactory,
    PlacementFactory,
    RunFactory,
    SitemapFactory,
)

pytestmark = pytest.mark.django_db

WRITE_METHODS = ("post", "put", "patch", "delete")

# Routes left out, each with the reason. Everything else is checked.
EXEMPT_NAMESPACES = {
    # Django's admin checks staff itself (a viewer is sent to the admin login): test_the_admin_refuses_a_viewer.
    "admin": "Django's admin",
}
EXEMPT_NAMES = {
    # The user's own account, not an advertiser's data.
    "login": "signs in",
    "logout": "signs out",
    "password_change": "the user's own password",
    "password_change_done": "a page",
    "password_reset": "the user's own password",
    "password_reset_done": "a page",
    "password_reset_confirm": "the user's own password",
    "password_reset_complete": "a page",
}
# Staff-only routes that do not exist for anyone else (404, as the dataset export API and the loop's screens
# answer) are refusals too; every other route must answer 403.
STAFF_ONLY_PREFIXES = ("/staff/", "/api/exports/")


def _patterns(resolver: URLResolver, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, URLPattern, str]]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}:{entry.namespace}".strip(":") if entry.namespace else namespace
            yield from _patterns(entry, prefix + str(entry.pattern), inner)
        else:
            yield prefix + str(entry.pattern), entry, namespace


def all_routes() -> list[tuple[str, URLPattern, str]]:
    return list(_patterns(get_resolver()))


@pytest.fixture
def viewer_world():
    """A viewer of an advertiser with everything a route can name: sitemap, image, fix, Run, model version."""
    membership = MembershipFactory(role=Membership.Role.VIEWER)
    advertiser = membership.advertiser
    sitemap = SitemapFactory(advertiser=advertiser)
    placement = PlacementFactory(listing=ListingFactory(sitemap=sitemap), status="ok", asset=ImageAssetFactory())
    fix = ManualFix.objects.create(
        advertiser=advertiser, asset=placement.asset, task="color", old_label="Blue", new_label="Red",
        source="staff",
    )  # fmt: skip
    run = RunFactory(sitemap=sitemap, status=Run.Status.SUCCEEDED)
    change_set = ChangeSet.objects.create(kind=ChangeSet.Kind.SAVE, advertiser=advertiser, fixes=1)
    ManualFix.objects.create(
        advertiser=advertiser, asset=placement.asset, task="color", old_label="Red", new_label="Green",
        source="staff", change_set=change_set,
    )  # fmt: skip
    version = ModelVersion.objects.create(
        name="starter", kind="classifier", file="models/s.onnx", sha256=hashlib.sha256(b"s").hexdigest(),
        contract={}, status="active",
    )  # fmt: skip
    ModelHead.objects.create(model_version=version, task="color", output="color", labels=[], is_active=True)
    scoped = ModelVersion.objects.create(
        name="starter for one", kind="classifier", file="models/t.onnx", sha256=hashlib.sha256(b"t").hexdigest(),
        contract={}, advertiser=advertiser,
    )  # fmt: skip
    ScopedHead.objects.create(advertiser=advertiser, task="color", model_version=scoped)
    values = {
        "sitemap_id": sitemap.pk,
        "placement_id": placement.pk,
        "image_id": placement.pk,
        "fix_id": fix.pk,
        "change_set_id": change_set.pk,
        "run_id": run.pk,
        "version_id": version.pk,
        "advertiser_id": advertiser.pk,  # its scoped head: only staff roll it back
        "export_id": 1,
        "job_id": 1,
        "kind": "training",
        "task": "color",
        "name": placement.asset.thumbnail.name,  # the media view: a read, any write method is refused
        # A signed link of the API (reviews.media_views): a read too
        "token": signed_media_url(membership.user, placement.asset.thumbnail.name).rsplit("/", 1)[1],
    }
    return membership.user, values


def _url(route: str, pattern: URLPattern, namespace: str, values: dict[str, object]) -> str:
    names = list(pattern.pattern.regex.groupindex)
    missing = [name for name in names if name not in values]
    assert not missing, f"route {route!r} takes {missing}: give the viewer's object for it in viewer_world"
    full_name = f"{namespace}:{pattern.name}" if namespace else pattern.name
    return reverse(full_name, kwargs={name: values[name] for name in names})


def _row_counts() -> dict[str, int]:
    return {
        model._meta.label: model.objects.count()
        for model in apps.get_models()
        if model not in (Session,) and model._meta.managed and not model._meta.proxy
    }


def test_a_viewer_is_refused_on_every_write_route(client, viewer_world):
    viewer, values = viewer_world
    token, _ = Token.objects.get_or_create(user=viewer)
    client.force_login(viewer)
    # A plausible body (the fields the write screens read, naming the viewer's own objects), so the answer is about
    # the role and not about a missing field.
    placement = values["placement_id"]
    form = {"placement": placement, "task": "color", "label": "Red", "change": f"{placement}:color:Red",
            "bulk_label": "Red", "selected": placement, "cluster": 1}  # fmt: skip
    before = _row_counts()
    checked, accepted = [], []
    for route, pattern, namespace in all_routes():
        full_name = f"{namespace}:{pattern.name}" if namespace else (pattern.name or "")
        if namespace.split(":")[0] in EXEMPT_NAMESPACES or full_name in EXEMPT_NAMES:
            continue
        if not pattern.name:
            # Media files (local storage only): Django's static file view, which reads and never writes.
            assert pattern.callback.__module__ == "django.views.static", f"unnamed route {route!r}: name it"
            continue
        url = _url(route, pattern, namespace, values)
        refusals = {403, 404} if url.startswith(STAFF_ONLY_PREFIXES) else {403}
        for method in WRITE_METHODS:
            data = form if method == "post" else None
            response = getattr(client, method)(url, data, HTTP_AUTHORIZATION=f"Token {token.key}")
            if response.status_code == 405:
                continue
            checked.append((method.upper(), url))
            if response.status_code not in refusals:
                accepted.append((method.upper(), url, response.status_code))
    assert not accepted, f"a viewer was not refused: {accepted}"
    assert _row_counts() == before  # nothing written
    # The enumeration reached the write routes we know of (and whatever was added since).
    for known in (
        ("POST", f"/api/sitemaps/{values['sitemap_id']}/runs/"),
        ("POST", f"/api/images/{values['image_id']}/fixes/"),
        ("POST", f"/api/fixes/{values['fix_id']}/revert/"),
        ("POST", f"/portal/sitemaps/{values['sitemap_id']}/fixes/"),
        ("POST", f"/portal/fixes/{values['fix_id']}/revert/"),
        ("POST", f"/portal/sitemaps/{values['sitemap_id']}/clusters/fix/"),
        ("POST", f"/staff/sitemaps/{values['sitemap_id']}/fixes/"),
        ("POST", f"/api/runs/{values['run_id']}/cancel/"),
        ("POST", f"/staff/runs/{values['run_id']}/cancel/"),
        ("POST", f"/staff/sitemaps/{values['sitemap_id']}/runs/start/"),
        ("POST", "/staff/queue/undo/"),
        ("POST", f"/portal/changes/{values['change_set_id']}/undo/"),
        ("POST", f"/staff/changes/{values['change_set_id']}/undo/"),
        ("POST", f"/portal/images/{values['placement_id']}/occlusion/"),
    ):
        assert known in checked, known


def test_an_editor_may_do_what_a_viewer_may_not(client, viewer_world):
    """The same requests as an editor get through: the refusals above are about the role."""
    viewer, values = viewer_world
    Membership.objects.filter(user=viewer).update(role=Membership.Role.EDITOR)
    token, _ = Token.objects.get_or_create(user=viewer)
    auth = {"HTTP_AUTHORIZATION": f"Token {token.key}"}

    assert client.post(f"/api/sitemaps/{values['sitemap_id']}/runs/", **auth).status_code == 202
    body = {"task": "color", "label": "Green"}
    fix = client.post(f"/api/images/{values['image_id']}/fixes/", body, content_type="application/json", **auth)
    assert fix.status_code == 201, fix.content
    # The fix just made is the one in effect, so the one an editor may revert (an older one is a 409: test_undo).
    assert client.post(f"/api/fixes/{fix.json()['id']}/revert/", **auth).status_code == 201


def test_a_viewer_cannot_start_a_run(client, viewer_world):
    viewer, values = viewer_world
    token, _ = Token.objects.get_or_create(user=viewer)

    response = client.post(f"/api/sitemaps/{values['sitemap_id']}/runs/", HTTP_AUTHORIZATION=f"Token {token.key}")

    assert response.status_code == 403
    assert "viewer" in response.json()["detail"]
    assert not Run.objects.filter(status=Run.Status.QUEUED).exists()


def test_the_admin_refuses_a_viewer(client, viewer_world):
    viewer, _ = viewer_world
    client.force_login(viewer)

    response = client.post(reverse("admin:catalog_sitemap_add"), {"name": "mine", "url": "https://x.example/"})

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))
