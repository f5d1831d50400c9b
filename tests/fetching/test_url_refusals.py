"""Refusals that say what happened, in the same words wherever a URL is taken (issue 10, sections 4-5)."""

from __future__ import annotations

import pytest

from catalog.admin import SitemapAdminForm
from catalog.fetching import FetchError, FetchPolicy, SafeFetcher
from catalog.fetching.addresses import parse_target, url_refusal
from catalog.inventory import FeedInvalid, parse_feed
from catalog.models import Sitemap
from catalog.services.runs import RunError, run_start
from tests.factories import AdvertiserFactory, SitemapFactory


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("file:///etc/passwd", "file"),
        ("gopher://dealer.example:70/_x", "gopher"),
        ("FTP://dealer.example/s.xml", "ftp"),
    ],
)
def test_other_schemes_are_refused_by_name(url, scheme):
    expected = f"unsupported scheme '{scheme}' (only http and https)"
    assert url_refusal(url) == expected
    with SafeFetcher(FetchPolicy()) as fetcher, pytest.raises(FetchError) as caught:
        fetcher.fetch(url)
    assert expected in str(caught.value)
    assert caught.value.reason == "unsupported_scheme"


@pytest.mark.parametrize(
    "url",
    [
        "http://.xn--iaur-yva35b.lt/sitemap.xml",  # an empty label
        "http://dealer..example/sitemap.xml",
        "http://xn--zz.example/sitemap.xml",  # not valid punycode
    ],
)
def test_hosts_idna_rejects_are_refused_clearly(url):
    with pytest.raises(FetchError) as caught:
        parse_target(url)
    assert caught.value.reason == "bad_url"
    assert "is not a valid domain name" in str(caught.value)


@pytest.mark.parametrize(
    "url", ["https://dealer.example/sitemap.xml", "http://m\u00fcnchen.example/", "http://my_host.example.com/"]
)
def test_valid_hosts_pass(url):
    assert url_refusal(url) is None


@pytest.mark.django_db
def test_the_admin_form_refuses_another_scheme_with_the_same_words():
    form = SitemapAdminForm(
        data={
            "advertiser": AdvertiserFactory().pk,
            "kind": Sitemap.Kind.SITEMAP,
            "url": "file:///etc/passwd",
            "schedule": Sitemap.Schedule.NIGHTLY,
            "is_enabled": "on",
            "tasks_enabled": '["color"]',
        }
    )

    assert not form.is_valid()
    assert form.errors["url"] == ["unsupported scheme 'file' (only http and https)"]


@pytest.mark.django_db
def test_the_admin_form_accepts_an_http_url():
    form = SitemapAdminForm(
        data={
            "advertiser": AdvertiserFactory().pk,
            "kind": Sitemap.Kind.SITEMAP,
            "url": "https://dealer.example/sitemap.xml",
            "schedule": Sitemap.Schedule.NIGHTLY,
            "tasks_enabled": '["color"]',
        }
    )
    assert form.is_valid(), form.errors


@pytest.mark.django_db
def test_a_run_of_a_sitemap_with_another_scheme_is_refused_at_once():
    sitemap = SitemapFactory(url="gopher://dealer.example/sitemap.xml")

    with pytest.raises(RunError, match=r"unsupported scheme 'gopher' \(only http and https\)"):
        run_start(sitemap=sitemap, enqueue=False)


def test_feed_image_urls_with_another_scheme_say_so():
    feed = {
        "format": "imagetagger-feed/1",
        "listings": [{"external_id": "A", "url": "https://dealer.example/a", "images": ["file:///etc/passwd"]}],
    }

    with pytest.raises(FeedInvalid) as caught:
        parse_feed(feed)

    assert caught.value.errors == ["listings[0].images[0]: unsupported scheme 'file' (only http and https)"]
