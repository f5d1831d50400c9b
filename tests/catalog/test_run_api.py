"""The scraper's call and Run status over the API, and the rules a Run start keeps."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Run, Sitemap
from catalog.services.runs import RunAlreadyActive, run_start, runs_start_nightly
from tests.factories import MembershipFactory, RunFactory, SitemapFactory, UserFactory

pytestmark = pytest.mark.django_db

FEED = {
    "format": "imagetagger-feed/1",
    "listings": [
        {
            "external_id": "VIN1",
            "url": "https://dealer.example/cars/1",
            "images": ["https://cdn.example/1.jpg"],
            "attributes": {"color": "Red"},
        }
    ],
}


def token_client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def member():
    return MembershipFactory().user


def test_scraper_starts_a_run_with_its_feed_and_reads_its_status(member, django_capture_on_commit_callbacks):
    sitemap = SitemapFactory(advertiser=member.memberships.get().advertiser, kind=Sitemap.Kind.FEED, url="")
    client = token_client(member)

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(f"/api/sitemaps/{sitemap.pk}/runs/", FEED, format="json")

    assert response.status_code == 202, response.content
    run = Run.objects.get(pk=response.json()["run"])
    assert response.json()["url"].endswith(f"/api/runs/{run.pk}/")
    assert (run.status, run.trigger, run.feed_document) == ("queued", "scrape", FEED)
    assert len(callbacks) == 1  # the task is enqueued once the Run is committed, not before

    detail = client.get(f"/api/runs/{run.pk}/").json()
    assert detail["run"] == run.pk
    assert {"status", "urls", "not_modified", "cache_hits", "downloaded", "failed", "classified"} <= set(detail)


def test_a_second_run_of_the_same_sitemap_is_refused_with_a_clear_message(member):
    sitemap = SitemapFactory(advertiser=member.memberships.get().advertiser)
    active = RunFactory(sitemap=sitemap, status=Run.Status.RUNNING)

    response = token_client(member).post(f"/api/sitemaps/{sitemap.pk}/runs/")

    assert response.status_code == 409
    assert response.json()["active_run"] == active.pk
    assert "never overlap" in response.json()["detail"]
    with pytest.raises(RunAlreadyActive):
        run_start(sitemap=sitemap, enqueue=False)


def test_an_invalid_feed_is_refused_with_every_problem_and_no_run(member):
    sitemap = SitemapFactory(advertiser=member.memberships.get().advertiser, kind=Sitemap.Kind.FEED, url="")
    bad = {
        "format": "imagetagger-feed/1",
        "listings": [{"external_id": "", "url": "ftp://x", "images": ["nope"]}],
    }

    response = token_client(member).post(f"/api/sitemaps/{sitemap.pk}/runs/", bad, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert any(error.startswith("listings[0].external_id") for error in errors)
    assert any(error.startswith("listings[0].url") for error in errors)
    assert any(error.startswith("listings[0].images[0]") for error in errors)
    assert not Run.objects.exists()


def test_another_advertisers_sitemap_and_run_answer_404(member):
    other = SitemapFactory()
    other_run = RunFactory(sitemap=other, status=Run.Status.SUCCEEDED, urls=7)
    client = token_client(member)

    assert client.post(f"/api/sitemaps/{other.pk}/runs/").status_code == 404
    response = client.get(f"/api/runs/{other_run.pk}/")
    assert response.status_code == 404
    assert b'"urls"' not in response.content
    assert not Run.objects.filter(sitemap=other).exclude(pk=other_run.pk).exists()


def test_staff_reach_every_sitemap_and_anonymous_nobody():
    sitemap = SitemapFactory()
    assert APIClient().post(f"/api/sitemaps/{sitemap.pk}/runs/").status_code == 401
    staff = UserFactory(is_staff=True)
    assert token_client(staff).post(f"/api/sitemaps/{sitemap.pk}/runs/?trigger=api").status_code == 202
    assert Run.objects.get(sitemap=sitemap).trigger == "api"


def test_nightly_starts_every_enabled_nightly_sitemap_once():
    due = SitemapFactory()
    busy = SitemapFactory()
    RunFactory(sitemap=busy, status=Run.Status.RUNNING)
    SitemapFactory(is_enabled=False)
    SitemapFactory(schedule=Sitemap.Schedule.MANUAL)
    SitemapFactory(advertiser__is_active=False)

    started = runs_start_nightly()

    assert [Run.objects.get(pk=pk).sitemap for pk in started] == [due]
    assert Run.objects.get(pk=started[0]).trigger == "nightly"


def test_a_zombie_process_counts_as_dead():
    import os
    import subprocess
    import sys

    from catalog.services.runs import process_alive

    assert process_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while True:  # not reaped yet: a zombie once it has exited
        with open(f"/proc/{child.pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
    assert not process_alive(child.pid)
    child.wait()
    assert not process_alive(child.pid)
