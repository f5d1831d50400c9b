"""Politeness towards image hosts (issue 18, section 7), as Scrapy's AutoThrottle is: Retry-After honoured per host,
a host that slows down backed off, and robots.txt respected for the advertisers who ask for it. Real Runs against a
real local server whose routes count what they get."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from catalog.fetching import FetchError
from catalog.fetching.fetcher import retry_after_seconds
from catalog.fetching.politeness import HostPoliteness, PolitenessPolicy
from catalog.fetching.robots import RobotsRules
from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import Placement, Run, Sitemap
from catalog.services.runs import run_execute, run_start
from tests.factories import AdvertiserFactory, SitemapFactory

USER_AGENT = "imagetagger/0.1 (+https://example.com/imagetagger; inventory image tagging)"


@pytest.fixture(scope="module")
def images():
    return make_inventory_images(6, seed=21)


def run_feed(server: InventoryServer, urls: list[str], **sitemap_fields: object) -> Run:
    sitemap = SitemapFactory(kind=Sitemap.Kind.FEED, url="", **sitemap_fields)
    feed = {
        "format": "imagetagger-feed/1",
        "listings": [
            {"external_id": f"car-{n}", "url": f"{server.base_url}/cars/{n}", "images": [url]}
            for n, url in enumerate(urls)
        ],
    }
    run = run_start(sitemap=sitemap, enqueue=False, feed_document=feed)
    run_execute(run_id=run.pk, inline=True)
    run.refresh_from_db()
    return run


def reasons() -> dict[str, str]:
    return dict(Placement.objects.values_list("url", "failure_reason"))


def send_image(request, body: bytes) -> None:
    request.send_response(200)
    request.send_header("Content-Type", "image/jpeg")
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def send_status(request, status: int, headers: dict[str, str]) -> None:
    request.send_response(status)
    for name, value in headers.items():
        request.send_header(name, value)
    request.send_header("Content-Length", "0")
    request.end_headers()


class RateLimited:
    """A CDN's rate limiter: after a first request it answers 429 with Retry-After until that time has passed, and
    counts the requests that came too early."""

    def __init__(self, image: bytes, retry_after: int, status: int = 429) -> None:
        self.image = image
        self.retry_after = retry_after
        self.status = status
        self.lock = threading.Lock()
        self.until: float | None = None
        self.requests = 0
        self.too_early = 0

    def __call__(self, request) -> None:
        with self.lock:
            self.requests += 1
            now = time.monotonic()
            if self.until is None:
                self.until = now + self.retry_after
                limited = True
            else:
                limited = now < self.until
                self.too_early += limited
        if limited:
            send_status(request, self.status, {"Retry-After": str(self.retry_after)})
        else:
            send_image(request, self.image)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("status", [429, 503])
def test_a_host_that_asks_to_wait_is_waited_for_then_the_image_is_fetched(images, settings, status):
    settings.RUN_RETRY_BACKOFF = 0.05  # our own backoff is much shorter than what the host asks
    settings.RUN_FETCH_RETRIES = 2
    with InventoryServer(images=images) as server:
        limited = RateLimited(images[0], retry_after=1, status=status)
        server.add_route("/limited/0.jpg", limited)
        url = f"{server.base_url}/limited/0.jpg"

        run = run_feed(server, [url])

        assert reasons() == {url: ""}
        assert (run.downloaded, run.failed) == (1, 0)
        assert (limited.requests, limited.too_early) == (2, 0)


@pytest.mark.django_db(transaction=True)
def test_a_host_asking_for_a_wait_longer_than_a_run_waits_is_given_up_without_more_requests(images, settings):
    settings.RUN_FETCH_MAX_RETRY_AFTER = 5
    with InventoryServer(images=images) as server:
        limited = RateLimited(images[0], retry_after=3600)
        for n in range(3):
            server.add_route(f"/limited/{n}.jpg", limited)
        urls = [f"{server.base_url}/limited/{n}.jpg" for n in range(3)]

        run = run_feed(server, urls)

        assert reasons() == dict.fromkeys(urls, "http_429")
        assert run.failed == 3
        assert limited.requests == 1  # the others were not sent: the host asked for an hour's peace
        details = set(Placement.objects.values_list("failure_detail", flat=True))
        assert any("Retry-After: 3600 s" in detail for detail in details)
        assert any("asking to wait 3600 s" in detail for detail in details)


class SlowHost:
    """Answers every image after `seconds`, and records how many requests it held at once."""

    def __init__(self, image: bytes, seconds: float) -> None:
        self.image = image
        self.seconds = seconds
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def __call__(self, request) -> None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.seconds)
        with self.lock:
            self.in_flight -= 1
        send_image(request, self.image)


@pytest.mark.django_db(transaction=True)
def test_a_host_that_slows_down_gets_about_target_concurrency_requests_at_once(images, settings):
    settings.RUN_FETCH_PER_HOST = 4
    settings.RUN_FETCH_CONCURRENCY = 4
    settings.RUN_FETCH_SLOW_SECONDS = 0.1  # this host's 0.3 s answers are slow
    with InventoryServer(images=images) as server:
        slow = SlowHost(images[0], seconds=0.3)
        for n in range(6):
            server.add_route(f"/slow/{n}.jpg", slow)

        run = run_feed(server, [f"{server.base_url}/slow/{n}.jpg" for n in range(6)])

        assert (run.downloaded + run.cache_hits, run.failed) == (6, 0)
        # Without the throttle the host held 4 at once (RUN_FETCH_PER_HOST); with it, one, and two at most while
        # one answer leaves as the next request comes in.
        assert slow.most_in_flight <= 2


def test_autothrottle_delays_a_slow_host_never_a_fast_one_and_errors_never_lower_the_delay():
    hosts = HostPoliteness(PolitenessPolicy(per_host=6, target_concurrency=2.0, slow_seconds=1.0, max_delay=10.0))
    slow, fast = "https://slow.example/1.jpg", "https://fast.example/1.jpg"

    with hosts.turn(fast) as turn:
        turn.answered(latency=0.2, status=200)
    with hosts.turn(slow) as turn:
        turn.answered(latency=4.0, status=200)
    assert (hosts.delay(fast), hosts.delay(slow)) == (0.0, 2.0)  # latency / target concurrency, at once

    with hosts.turn(slow) as turn:
        turn.answered(latency=0.1, status=503)  # a quick error page: no faster
    assert hosts.delay(slow) == 2.0
    with hosts.turn(slow) as turn:
        turn.answered(latency=0.1, status=200)  # fast again: halved towards 0, as AutoThrottle does
    assert hosts.delay(slow) == 1.0
    with hosts.turn(slow) as turn:
        turn.answered(latency=100.0, status=200)
    assert hosts.delay(slow) == 10.0  # max_delay


def test_a_host_paused_beyond_the_cap_refuses_at_once_without_waiting():
    hosts = HostPoliteness(PolitenessPolicy(max_retry_after=5.0))
    with hosts.turn("https://cdn.example/1.jpg") as turn:
        turn.asked_to_wait(3600.0, status=503)

    with (
        pytest.raises(FetchError, match="HTTP 503 asking to wait 3600 s") as refused,
        hosts.turn("https://cdn.example/2.jpg"),
    ):
        pass
    assert (refused.value.status, refused.value.transient) == (503, False)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), (" 0 ", 0.0), ("soon", None), (None, None), ("-5", None)],
)
def test_retry_after_seconds(value, seconds):
    assert retry_after_seconds(value) == seconds


def test_retry_after_as_an_http_date():
    now = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)

    assert retry_after_seconds(later, now=now.timestamp()) == 90.0
    assert retry_after_seconds(earlier, now=now.timestamp()) == 0.0


# -- robots.txt -------------------------------------------------------------------------------------------------

ROBOTS = """\
User-agent: Googlebot
Disallow: /

User-agent: ImageTagger
User-agent: other-bot
Disallow: /img/
Allow: /img/public/
Disallow: /*.png$
Allow: /img/x$

User-agent: *
Disallow: /private/
"""


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/img/1.jpg", False),
        ("/img/public/1.jpg", True),  # the longer rule wins
        ("/photos/1.png", False),
        ("/photos/1.png?v=2", True),  # $ anchors the end
        ("/img/x", True),  # an allow wins a tie... and is longer here
        ("/private/1.jpg", True),  # the * group is not ours: our group is the one naming us
        ("/%69mg/1.jpg", False),  # percent-encoding does not hide a path
    ],
)
def test_robots_rules_of_our_group(path, allowed):
    rules = RobotsRules.parse(ROBOTS, user_agent=USER_AGENT)

    assert rules.allows(f"https://cdn.example{path}") is allowed


def test_robots_rules_without_our_group_use_the_star_group_and_a_tie_goes_to_allow():
    rules = RobotsRules.parse("User-agent: *\nDisallow: /a\nAllow: /a\nDisallow:\n", user_agent=USER_AGENT)

    assert rules.allows("https://cdn.example/a/1.jpg") is True
    assert (
        RobotsRules.parse(ROBOTS.replace("ImageTagger", "x"), user_agent=USER_AGENT).allows(
            "https://cdn.example/private/1.jpg"
        )
        is False
    )


def robots_route(body: bytes, status: int = 200) -> Callable:
    def handler(request) -> None:
        request.send_response(status)
        request.send_header("Content-Type", "text/plain")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handler


@pytest.mark.django_db(transaction=True)
def test_an_advertiser_who_asks_for_it_gets_robots_txt_respected_for_images(images):
    with InventoryServer(images=images, images_per_listing=1) as server:
        server.add_route("/robots.txt", robots_route(b"User-agent: imagetagger\nDisallow: /img/0/1.jpg\n"))
        urls = [server.image_url(0), server.image_url(1)]

        run = run_feed(server, urls, advertiser=AdvertiserFactory(respect_robots_txt=True))

        assert reasons() == {server.image_url(0): "", server.image_url(1): "robots_disallowed"}
        assert run.failure_reasons == {"robots_disallowed": 1}
        assert "/img/0/1.jpg" not in server.request_paths
        assert server.request_paths.count("/robots.txt") == 1


@pytest.mark.django_db(transaction=True)
def test_robots_txt_is_not_read_by_default_nor_when_missing_and_unreachable_disallows(images):
    with InventoryServer(images=images, images_per_listing=1) as server:
        server.add_route("/robots.txt", robots_route(b"User-agent: *\nDisallow: /\n"))
        run_feed(server, [server.image_url(0)])  # off by default: the advertiser asked us to read their images
        assert reasons() == {server.image_url(0): ""}
        assert "/robots.txt" not in server.request_paths

        Placement.objects.all().delete()
        server.add_route("/robots.txt", robots_route(b"down", status=503))
        run_feed(server, [server.image_url(1)], advertiser=AdvertiserFactory(respect_robots_txt=True))
        assert reasons() == {server.image_url(1): "robots_disallowed"}  # RFC 9309: unreachable is a full disallow
        assert "unreachable" in Placement.objects.get().failure_detail

        Placement.objects.all().delete()
        server.add_route("/robots.txt", robots_route(b"not found", status=404))
        run_feed(server, [server.image_url(2)], advertiser=AdvertiserFactory(respect_robots_txt=True))
        assert reasons() == {server.image_url(2): ""}
