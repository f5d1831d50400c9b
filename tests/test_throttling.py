"""Throttling that holds under concurrency: every request is counted in the shared cache (Redis when the suite has
it, as production does), so requests sent together cannot slip past the limit; lockouts and throttles say when to
come back (Retry-After)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.authtoken.models import Token

from tests.factories import MembershipFactory, SitemapFactory, UserFactory

REDIS = os.environ.get("CELERY_BROKER_URL", "").startswith("redis://")


@pytest.fixture(params=["per-process cache", "redis"])
def shared_cache(request, settings):
    """The cache the counts go to: the embedded default's, and Redis (production's) where the suite has Redis."""
    if request.param == "redis":
        if not REDIS:
            pytest.skip("needs Redis: CELERY_BROKER_URL=redis://...")
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": "redis://127.0.0.1:6379/13",
            }
        }
    from axes.handlers.proxy import AxesProxyHandler
    from rest_framework.throttling import SimpleRateThrottle

    SimpleRateThrottle.cache = cache  # DRF binds its cache at import; the settings above replaced it
    # django-axes keeps one handler, bound to the cache of its first use: made again here and after, so neither this
    # test's lockouts nor later tests' count in the other cache (a later test logging in as "dealer" was locked out).
    AxesProxyHandler.implementation = None
    cache.clear()
    yield cache
    cache.clear()
    AxesProxyHandler.implementation = None


@pytest.mark.django_db(transaction=True)
def test_requests_sent_together_never_exceed_the_limit(live_server, settings, shared_cache):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"advertiser": "40/day"}}
    editor = MembershipFactory().user
    SitemapFactory(advertiser=editor.memberships.get().advertiser)
    token = Token.objects.create(user=editor).key
    url = f"{live_server.url}/api/sitemaps/"

    def send(client: httpx.Client) -> list[int]:
        return [client.get(url).status_code for _ in range(15)]

    clients = [httpx.Client(headers={"Authorization": f"Token {token}"}, timeout=30) for _ in range(8)]
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = [code for codes in pool.map(send, clients) for code in codes]
    finally:
        for client in clients:
            client.close()

    # Not one more than the limit got through (a day's window: the burst does not straddle two).
    assert answers.count(200) == 40, answers
    assert answers.count(429) == 80


def test_counting_is_atomic_across_threads(settings, shared_cache):
    from config.api import throttle_count

    start = threading.Barrier(8)

    def count(_: int) -> list[int]:
        start.wait()
        return [throttle_count("throttle_test", timeout=60) for _ in range(50)]

    with ThreadPoolExecutor(8) as pool:
        seen = [n for values in pool.map(count, range(8)) for n in values]

    assert sorted(seen) == list(range(1, 401))  # every increment counted, each value given once


@pytest.mark.django_db
def test_a_throttled_answer_and_a_lockout_say_when_to_come_back(client, settings, shared_cache):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"advertiser": "1/minute"}}
    editor = MembershipFactory().user
    token = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=editor).key}"}
    client.get("/api/sitemaps/", **token)
    throttled = client.get("/api/sitemaps/", **token)
    assert throttled.status_code == 429
    assert 1 <= int(throttled["Retry-After"]) <= 60

    UserFactory(username="dealer", password="right-password-1")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        locked = client.post(reverse("login"), {"username": "dealer", "password": "wrong"})
    assert locked.status_code == 429
    assert int(locked["Retry-After"]) == int(settings.AXES_COOLOFF_TIME * 3600)
    assert b"locked" in locked.content.lower()
