"""A failed image says what happened and what to do (catalog.failures) on every screen that shows it, and in the API;
staff also see the code."""

import pytest
from django.test import Client
from django.urls import reverse

from catalog.failures import failure
from catalog.models import Outcome, Run
from reviews.effective_store import effective_tags_refresh
from tests.factories import ListingFactory, MembershipFactory, PlacementFactory, RunFactory, SitemapFactory, UserFactory

pytestmark = pytest.mark.django_db

SENTENCE = failure("http_404").sentence  # "The image is not on the site any more (404 Not Found)."
ACTION = failure("http_404").action


@pytest.fixture
def world():
    sitemap = SitemapFactory(name="Used cars")
    run = RunFactory(sitemap=sitemap, status=Run.Status.PARTIAL, urls=2, failed=1, failure_reasons={"http_404": 1})
    placement = PlacementFactory(
        listing=ListingFactory(sitemap=sitemap), status="failed", failure_reason="http_404",
        failure_detail="GET https://cdn.example/1.jpg: 404", last_run=run, outcome=Outcome.FAILED,
    )  # fmt: skip
    effective_tags_refresh(placement_ids=[placement.pk])
    advertiser = Client()
    advertiser.force_login(MembershipFactory(advertiser=sitemap.advertiser, user=UserFactory()).user)
    staff = Client()
    staff.force_login(UserFactory(is_staff=True))
    return {"sitemap": sitemap, "run": run, "placement": placement, "advertiser": advertiser, "staff": staff}


def html(client, name, *args):
    answer = client.get(reverse(f"reviews:{name}", args=args))
    assert answer.status_code == 200
    return answer.content.decode()


def test_the_advertiser_reads_the_sentence_and_what_to_do_not_the_code(world):
    from django.utils.html import escape

    grid = html(world["advertiser"], "portal-grid", world["sitemap"].pk)
    image = html(world["advertiser"], "portal-image", world["placement"].pk)
    assert escape(SENTENCE) in grid
    assert f'title="{escape(ACTION)}"' in grid
    assert escape(SENTENCE) in image
    assert escape(ACTION) in image
    assert "http_404" not in grid
    assert "http_404" not in image


def test_staff_read_the_sentence_with_the_code_beside_it(world):
    from django.utils.html import escape

    grid = html(world["staff"], "staff-grid", world["sitemap"].pk)
    image = html(world["staff"], "staff-image", world["placement"].pk)
    run = html(world["staff"], "staff-run", world["run"].pk)
    assert escape(SENTENCE) in grid
    assert '<code class="reason">http_404</code>' in grid
    assert escape(SENTENCE) in image
    assert "<code>http_404</code> GET https://cdn.example/1.jpg: 404" in image
    row = run[run.index('data-reason="http_404"') :]
    row = row[: row.index("</tr>")]
    assert "<code>http_404</code>" in row
    assert escape(SENTENCE) in row
    assert escape(ACTION) in row


def test_the_api_gives_the_message_beside_the_code(world):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    user = MembershipFactory(advertiser=world["sitemap"].advertiser, user=UserFactory()).user
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    answer = api.get(f"/api/sitemaps/{world['sitemap'].pk}/images/")
    assert answer.status_code == 200, answer.content
    (item,) = answer.json()["results"]
    assert (item["failure_reason"], item["failure_message"]) == ("http_404", f"{SENTENCE} {ACTION}")
