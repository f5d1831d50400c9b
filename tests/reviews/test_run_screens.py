"""The staff Runs screens: a sitemap's Runs and one Run, their grid links, Run now and cancel (screen, API, admin),
and the advertisers' screen (ages, linked flags and failures, local accuracy with its reviewed count)."""

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from catalog.models import Membership, Outcome, Run
from catalog.services.runs import RUN_CANCELLED
from notifications.models import Notification
from reviews.effective_store import effective_tags_refresh
from reviews.grid import GridFilters, sitemap_placements
from reviews.health.runs import live_failed_placements, runs_chart
from reviews.models import ManualFix
from reviews.templatetags.run_tags import age
from tests.factories import (
    ImageAssetFactory,
    ListingFactory,
    MembershipFactory,
    PlacementFactory,
    RunFactory,
    SitemapFactory,
    UserFactory,
)
from tests.reviews.test_health import active_model, classify

pytestmark = pytest.mark.django_db

FLAGS = [
    {"code": "failures_jump", "message": "40% of the images failed (4 of 10)"},
    {"code": "cdn_changed", "message": "downloads jumped from 0% to 60% of the URLs"},
    {
        "code": "label_share_jump",
        "message": "image_type: share of Stock jumped",
        "task": "image_type",
        "label": "Stock",
    },
    {"code": "ml_failed", "message": "the model failed on 2 images", "classification_failed": 2, "tasks": ["color"]},
    {"code": "disagreements", "message": "the advertiser and staff disagree on 1 tags", "tags": 1},
    {"code": "placeholder_color_fix", "message": "1 image tagged Placeholder has a color fix", "images": 1},
]


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True))
    return client


def failed_image(sitemap, run, reason, n, **kwargs):
    return PlacementFactory(
        listing=ListingFactory(sitemap=sitemap), url=f"https://cdn.example/{reason}/{n}.jpg", status="failed",
        failure_reason=reason, last_run=run, outcome=Outcome.FAILED, **kwargs,
    )  # fmt: skip


def sitemap_with_runs(extra_runs=0):
    """A sitemap whose older Runs succeeded and whose latest Run failed on 3 images (404) and 1 (timeout); one more
    404 image is gone (out of the grid), and the model failed on 2 images (a step failure: no image to show)."""
    sitemap = SitemapFactory(name="Used cars")
    for _ in range(1 + extra_runs):
        RunFactory(sitemap=sitemap, status=Run.Status.SUCCEEDED, urls=10, not_modified=10, finished_at=timezone.now())
    run = RunFactory(
        sitemap=sitemap, status=Run.Status.PARTIAL, urls=11, downloaded=5, failed=5, classified=3,
        finished_at=timezone.now(), health_flags=FLAGS,
        failure_reasons={"http_404": 4, "timeout": 1, "classification_failed": 2},
    )  # fmt: skip
    failed = [failed_image(sitemap, run, "http_404", n) for n in range(3)] + [failed_image(sitemap, run, "timeout", 0)]
    failed_image(sitemap, run, "http_404", 9, is_gone=True)
    for n in range(5):
        PlacementFactory(
            listing=ListingFactory(sitemap=sitemap), status="ok", asset=ImageAssetFactory(), last_run=run,
            outcome=Outcome.DOWNLOADED, url=f"https://cdn.example/ok/{n}.jpg",
        )  # fmt: skip
    return sitemap, run, failed


def query(url):
    parts = urlsplit(url)
    return parts.path, {name: values[0] for name, values in parse_qs(parts.query).items()}


def test_the_runs_page_lists_failures_by_reason_with_samples_and_links_to_exactly_those_images(staff_client):
    sitemap, run, failed = sitemap_with_runs()
    grid = reverse("reviews:staff-grid", args=[sitemap.pk])

    page = staff_client.get(reverse("reviews:staff-sitemap-runs", args=[sitemap.pk]))

    assert page.status_code == 200
    latest = page.context["runs"][0]
    assert latest.run == run
    assert (latest.failed_images, query(latest.failed_url)) == (4, (grid, {"run": str(run.pk), "outcome": "failed"}))
    assert set(live_failed_placements(run)) == set(failed)  # what the link selects: the gone image is left out
    reasons = [(r.reason, r.urls, r.images, len(r.samples)) for r in latest.reasons]
    assert reasons == [("http_404", 4, 3, 3), ("timeout", 1, 1, 1), ("classification_failed", 2, 0, 0)]
    assert query(latest.reasons[0].url)[1] == {"run": str(run.pk), "outcome": "failed", "reason": "http_404"}
    assert set(latest.reasons[0].samples) <= {p.url for p in failed}
    links = {flag.code: [query(link.url) for link in flag.links] for flag in latest.flags}
    assert links == {
        "failures_jump": [(grid, {"run": str(run.pk), "outcome": "failed"})],
        "cdn_changed": [
            (grid, {"run": str(run.pk), "outcome": "downloaded"}),
            (grid, {"run": str(run.pk), "outcome": "cache_hit"}),
        ],
        "label_share_jump": [(grid, {"task": "image_type", "label": "Stock"})],
        "ml_failed": [(grid, {"task": "color", "source": "failed"})],
        "disagreements": [
            (reverse("reviews:staff-queue"), {"advertiser": str(sitemap.advertiser_id), "reason": "conflict"})
        ],
        "placeholder_color_fix": [],  # no grid filter selects exactly these: the flag says what to look for
    }
    html = page.content.decode()
    assert f'href="{grid}?run={run.pk}&amp;outcome=failed&amp;reason=http_404"' in html
    assert "https://cdn.example/http_404/0.jpg" in html
    assert 'id="run-now"' in html  # nothing under way


def test_the_grid_behind_each_failure_link_shows_exactly_those_images(staff_client):
    sitemap, run, failed = sitemap_with_runs()
    older = Run.objects.filter(sitemap=sitemap).exclude(pk=run.pk).get()
    failed_image(sitemap, older, "timeout", 7)  # failed by another Run: not behind this Run's links
    effective_tags_refresh(sitemap_id=sitemap.pk)  # the grid reads the stored tags, as a Run's sync writes them
    view = staff_client.get(reverse("reviews:staff-sitemap-runs", args=[sitemap.pk])).context["runs"][0]

    def shown(url):
        return set(sitemap_placements(sitemap=sitemap, filters=GridFilters.from_params(query(url)[1])))

    assert shown(view.failed_url) == set(failed)
    assert len(shown(view.failed_url)) == view.failed_images
    by_reason = {reason.reason: reason for reason in view.reasons}
    assert shown(by_reason["http_404"].url) == set(failed[:3])
    assert shown(by_reason["timeout"].url) == {failed[3]}
    assert [len(shown(r.url)) for r in view.reasons if r.url] == [r.images for r in view.reasons if r.url]


def test_the_runs_page_runs_a_constant_number_of_queries(staff_client, django_assert_max_num_queries):
    small, _, _ = sitemap_with_runs()
    large, _, _ = sitemap_with_runs(extra_runs=12)
    with django_assert_max_num_queries(20) as few:
        staff_client.get(reverse("reviews:staff-sitemap-runs", args=[small.pk]))
    with django_assert_max_num_queries(len(few.captured_queries)):
        staff_client.get(reverse("reviews:staff-sitemap-runs", args=[large.pk]))


def test_the_chart_shows_failures_and_label_shares_of_the_last_finished_runs(staff_client):
    sitemap = SitemapFactory(tasks_enabled=["image_type", "color"])
    shares = [{"Dealer": 0.9, "Stock": 0.1}, {"Dealer": 0.5, "Placeholder": 0.5}]
    start = timezone.now()
    old, new = (
        RunFactory(sitemap=sitemap, status="succeeded", urls=10, failed=n, label_shares={"image_type": share},
                   finished_at=start + timedelta(minutes=n))
        for n, share in enumerate(shares)
    )  # fmt: skip
    RunFactory(sitemap=sitemap, status="running", urls=10)  # under way: not on the chart

    chart = runs_chart(sitemap=sitemap)
    assert [(p.run_id, p.failure_share) for p in chart.points] == [(old.pk, 0.0), (new.pk, 0.1)]  # oldest first
    assert chart.labels == ["Dealer", "Stock", "Placeholder"]  # the vocabulary's order
    assert chart.points[1].shares == {"Dealer": 0.5, "Placeholder": 0.5}

    html = staff_client.get(reverse("reviews:staff-sitemap-runs", args=[sitemap.pk])).content.decode()
    assert '<svg class="runs-chart"' in html
    assert '<g class="series" data-series="failed">' in html
    assert f"Run #{new.pk}: 1 of 10 failed" in html  # a point's tooltip
    table = html[html.index('id="runs-chart-table"') :]
    assert "10%" in table
    assert "50%" in table
    color = staff_client.get(reverse("reviews:staff-sitemap-runs", args=[sitemap.pk]), {"task": "color"})
    assert color.context["chart"].labels == []  # no color shares recorded


def test_the_run_page_shows_the_run_and_its_notifications(staff_client):
    _, run, _ = sitemap_with_runs()
    Notification.objects.create(run=run, channel="webhook", target="https://hooks.example/x", status="failed",
                                attempts=6, last_error="failed https://hooks.example/x: HTTP 503")  # fmt: skip
    Notification.objects.create(run=run, channel="email", target="ops@dealer.example", status="sent", attempts=1)

    page = staff_client.get(reverse("reviews:staff-run", args=[run.pk]))

    html = page.content.decode()
    assert page.context["view"].failed_images == 4
    assert "HTTP 503" in html
    assert "ops@dealer.example" in html
    assert html.count('data-channel="') == 2
    assert 'id="cancel-run"' not in html  # finished: nothing to cancel
    assert "40% of the images failed (4 of 10)" in html


def test_run_now_queues_a_manual_run_and_cancel_fails_it_as_cancelled(staff_client, django_capture_on_commit_callbacks):
    sitemap = SitemapFactory()
    with django_capture_on_commit_callbacks() as enqueued:
        response = staff_client.post(reverse("reviews:staff-run-start", args=[sitemap.pk]))
    run = Run.objects.get(sitemap=sitemap)
    assert response.url == reverse("reviews:staff-run", args=[run.pk])
    assert (run.status, run.trigger, run.requested_by.is_staff) == ("queued", "manual", True)
    assert len(enqueued) == 1  # handed to a worker once committed

    again = staff_client.post(reverse("reviews:staff-run-start", args=[sitemap.pk]))  # one Run of a sitemap at a time
    assert again.url == reverse("reviews:staff-run", args=[run.pk])
    assert Run.objects.filter(sitemap=sitemap).count() == 1
    page = staff_client.get(reverse("reviews:staff-run", args=[run.pk])).content.decode()
    assert 'id="cancel-run"' in page
    assert 'hx-trigger="every 2s"' in page  # under way: the summary refreshes itself

    staff_client.post(reverse("reviews:staff-run-cancel", args=[run.pk]))
    run.refresh_from_db()
    assert (run.status, run.error) == ("failed", RUN_CANCELLED)
    refused = staff_client.post(reverse("reviews:staff-run-cancel", args=[run.pk]), follow=True)
    assert "only a queued or running Run can be cancelled" in refused.content.decode()
    with django_capture_on_commit_callbacks():
        staff_client.post(reverse("reviews:staff-run-start", args=[sitemap.pk]))  # the sitemap is free again
    assert Run.objects.filter(sitemap=sitemap, status="queued").count() == 1


@pytest.fixture
def member_api(client):
    def make(role, run):
        membership = MembershipFactory(advertiser=run.sitemap.advertiser, role=role)
        token, _ = Token.objects.get_or_create(user=membership.user)
        return lambda url: client.post(url, HTTP_AUTHORIZATION=f"Token {token.key}")

    return make


def test_the_api_cancels_a_run_for_staff_and_editors_but_not_viewers(member_api, client):
    run = RunFactory(status=Run.Status.RUNNING, started_at=timezone.now())
    url = reverse("catalog:run-cancel", args=[run.pk])

    viewer = member_api(Membership.Role.VIEWER, run)(url)
    assert viewer.status_code == 403
    assert "viewer" in viewer.json()["detail"]
    run.refresh_from_db()
    assert run.status == "running"
    stranger = RunFactory(status=Run.Status.QUEUED)  # another advertiser's Run does not exist for this editor
    editor = member_api(Membership.Role.EDITOR, run)
    assert editor(reverse("catalog:run-cancel", args=[stranger.pk])).status_code == 404

    answer = editor(url)
    assert answer.status_code == 200
    assert (answer.json()["status"], answer.json()["error"]) == ("failed", "cancelled")
    finished = editor(url)
    assert finished.status_code == 409
    assert "only a queued or running Run" in finished.json()["detail"]

    client.force_login(UserFactory(is_staff=True))
    assert client.post(reverse("catalog:run-cancel", args=[stranger.pk])).status_code == 200


def test_the_admin_action_cancels_the_active_runs_and_leaves_the_others(client):
    client.force_login(UserFactory(username="admin", is_staff=True, is_superuser=True))
    queued, done = RunFactory(status=Run.Status.QUEUED), RunFactory(status=Run.Status.SUCCEEDED)

    response = client.post(
        reverse("admin:catalog_run_changelist"),
        {"action": "cancel_runs", ACTION_CHECKBOX_NAME: [queued.pk, done.pk]},
        follow=True,
    )

    queued.refresh_from_db()
    done.refresh_from_db()
    assert (queued.status, queued.error, done.status) == ("failed", RUN_CANCELLED, "succeeded")
    html = response.content.decode()
    assert f"Cancelled Run {queued.pk}" in html
    assert f"Run {done.pk} is succeeded: only a queued or running Run can be cancelled" in html


@pytest.mark.parametrize("role", [None, Membership.Role.EDITOR])
def test_the_runs_screens_are_staff_only(client, role):
    sitemap, run, _ = sitemap_with_runs()
    user = UserFactory()
    if role:
        MembershipFactory(user=user, advertiser=sitemap.advertiser, role=role)
    client.force_login(user)
    for url in (reverse("reviews:staff-sitemap-runs", args=[sitemap.pk]), reverse("reviews:staff-run", args=[run.pk])):
        assert client.get(url).status_code == 403
    for url in (
        reverse("reviews:staff-run-start", args=[sitemap.pk]),
        reverse("reviews:staff-run-cancel", args=[run.pk]),
    ):
        assert client.post(url).status_code == 403
    assert Run.objects.filter(sitemap=sitemap).count() == 2


def test_ages_say_just_now_instead_of_zero_minutes():
    now = timezone.now()
    assert age(now - timedelta(seconds=5), now) == "just now"
    assert age(now + timedelta(seconds=2), now) == "just now"  # a clock a little ahead
    assert age(now - timedelta(seconds=61), now) == "1\xa0minute ago"
    assert age(now - timedelta(days=2, hours=3), now) == "2\xa0days, 3\xa0hours ago"
    assert age(None) == ""


def test_the_advertisers_screen_links_flags_and_failures_and_shows_the_reviewed_count(staff_client):
    sitemap, run, _ = sitemap_with_runs()
    Run.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(seconds=3))
    version = active_model("image_type")
    placement = PlacementFactory(listing=ListingFactory(sitemap=sitemap), status="ok", asset=ImageAssetFactory())
    classify(placement.asset, version, "image_type", "Dealer")
    ManualFix.objects.create(advertiser=sitemap.advertiser, asset=placement.asset, task="image_type",
                             old_label="Dealer", new_label="Dealer", source="staff")  # fmt: skip

    html = staff_client.get(reverse("reviews:staff-advertisers")).content.decode()

    grid = reverse("reviews:staff-grid", args=[sitemap.pk])
    assert "just now" in html
    assert "0\xa0minutes" not in html
    assert f'href="{grid}?run={run.pk}&amp;outcome=failed"' in html  # the last Run's failed images, and its flag
    assert f'href="{grid}?task=image_type&amp;label=Stock"' in html
    assert f">4 in {sitemap}<" in html
    assert '<span class="reviewed">1 of 1 reviewed</span>' in html
    assert reverse("reviews:staff-sitemap-runs", args=[sitemap.pk]) in html
    assert reverse("reviews:staff-run", args=[run.pk]) in html
