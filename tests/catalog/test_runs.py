"""Runs in this process against a real local HTTP server: caching, identity by content, failures, gone."""

import json

import pytest
from django.core.management import call_command

from catalog.inventory_server import InventoryServer, decompression_bomb_png, make_inventory_images
from catalog.models import ImageAsset, Listing, Placement, Run, Sitemap
from catalog.services.runs import run_execute, run_start
from tests.factories import SitemapFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def images():
    return make_inventory_images(12, seed=7)


def run_sync(sitemap, **kwargs) -> Run:
    run = run_start(sitemap=sitemap, enqueue=False, **kwargs)
    run_execute(run_id=run.pk, inline=True)
    run.refresh_from_db()
    return run


def counters(run):
    return {k: getattr(run, k) for k in ("status", "urls", "not_modified", "cache_hits", "downloaded", "failed")}


def test_first_run_brings_every_image_in_then_a_rerun_costs_no_download(images):
    with InventoryServer(images=images, images_per_listing=4) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)

        first = run_sync(sitemap)
        assert counters(first) == {
            "status": "succeeded", "urls": 12, "not_modified": 0, "cache_hits": 0, "downloaded": 12, "failed": 0
        }  # fmt: skip
        assert first.listings == 3
        assert ImageAsset.objects.count() == 12
        placement = Placement.objects.select_related("asset").get(url=server.image_url(5))
        assert (placement.status, placement.position, placement.etag) == ("ok", 1, server.etag(5))
        assert (placement.asset.width, placement.asset.height, placement.asset.format) == (
            *_size_of(images[5]),
            "JPEG",
        )
        assert len(placement.asset.phash) == 16
        assert placement.asset.thumbnail.storage.exists(placement.asset.thumbnail.name)

        server.reset_counters()
        second = run_sync(sitemap)
        assert counters(second) == {
            "status": "succeeded", "urls": 12, "not_modified": 12, "cache_hits": 0, "downloaded": 0, "failed": 0
        }  # fmt: skip
        assert (server.image_downloads, server.not_modified) == (0, 12)

        server.rename()  # a CDN that renamed every file and changed every ETag, same bytes
        third = run_sync(sitemap)
        assert counters(third) == {
            "status": "succeeded", "urls": 12, "not_modified": 0, "cache_hits": 12, "downloaded": 0, "failed": 0
        }  # fmt: skip
        assert ImageAsset.objects.count() == 12
        # The old URLs left their listings: kept as gone, with their asset, not deleted.
        old = Placement.objects.get(url=placement.url)
        assert (old.is_gone, old.asset_id) == (True, placement.asset_id)
        new = Placement.objects.get(listing=placement.listing, url=server.image_url(5))
        assert (new.is_gone, new.asset_id, new.outcome) == (False, placement.asset_id, "cache_hit")


def _size_of(data):
    from io import BytesIO

    from PIL import Image

    return Image.open(BytesIO(data)).size


@pytest.mark.parametrize(("validators", "expected"), [("last-modified", "not_modified"), ("none", "cache_hits")])
def test_rerun_revalidates_with_whatever_validators_the_cdn_sends(images, validators, expected):
    with InventoryServer(images=images[:4], images_per_listing=2, validators=validators) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run_sync(sitemap)
        rerun = run_sync(sitemap)
        assert getattr(rerun, expected) == 4
        assert rerun.downloaded == 0


def feed_with(server, urls):
    return {
        "format": "imagetagger-feed/1",
        "listings": [
            {"external_id": f"car-{n}", "url": f"{server.base_url}/cars/{n}", "images": [url]}
            for n, url in enumerate(urls)
        ],
    }


def test_failures_are_recorded_per_placement_and_the_run_goes_on(images, settings):
    settings.FETCH_READ_TIMEOUT = 0.5
    settings.RUN_RETRY_BACKOFF = 0.05
    decompression_bomb_png()  # made once per process: made inside a request, it can outlast the 0.5 s timeout
    with InventoryServer(images=images[:2], images_per_listing=1) as server:
        special = {
            name: f"{server.base_url}/special/{name}"
            for name in ("404.jpg", "slow.jpg", "redirect.jpg", "redirect-private.jpg", "html.jpg", "bomb.png",
                         "truncated.jpg", "flaky.jpg")
        }  # fmt: skip
        urls = [server.image_url(0), "http://10.1.2.3/internal.jpg", *special.values()]
        sitemap = SitemapFactory(kind=Sitemap.Kind.FEED, url="")

        run = run_sync(sitemap, feed_document=feed_with(server, urls))

        reasons = dict(Placement.objects.values_list("url", "failure_reason"))
        assert reasons == {
            server.image_url(0): "",
            "http://10.1.2.3/internal.jpg": "blocked_address",
            special["404.jpg"]: "http_404",
            special["slow.jpg"]: "timeout",
            special["redirect.jpg"]: "",  # followed to a real image
            special["redirect-private.jpg"]: "blocked_address",
            special["html.jpg"]: "not_image",
            special["bomb.png"]: "too_many_pixels",
            special["truncated.jpg"]: "corrupt_image",
            special["flaky.jpg"]: "",  # a 503 is transient: retried, then fine
        }
        assert run.status == "partial"
        assert (run.urls, run.failed, run.downloaded + run.cache_hits) == (10, 7, 3)
        assert run.failure_reasons == {
            "blocked_address": 2, "http_404": 1, "timeout": 1, "not_image": 1, "too_many_pixels": 1,
            "corrupt_image": 1,
        }  # fmt: skip
        failed = Placement.objects.get(url=special["html.jpg"])
        assert failed.status == "failed"
        assert "not" in failed.failure_detail.lower()

        # A failed URL is tried again on the next Run.
        server.reset_counters()
        rerun = run_sync(sitemap, feed_document=feed_with(server, urls))
        assert rerun.failed == 7
        assert server.requests > 0


def test_a_listing_that_left_the_feed_is_marked_gone_not_deleted(images):
    with InventoryServer(images=images[:3], images_per_listing=1) as server:
        sitemap = SitemapFactory(kind=Sitemap.Kind.FEED, url="")
        urls = [server.image_url(i) for i in range(3)]
        run_sync(sitemap, feed_document=feed_with(server, urls))
        run = run_sync(sitemap, feed_document=feed_with(server, urls[:2]))

        assert run.urls == 2
        gone = Listing.objects.get(external_id="car-2")
        assert gone.is_gone
        assert gone.placements.get().is_gone
        assert Listing.objects.filter(is_gone=False).count() == 2


def test_a_source_that_cannot_be_read_fails_the_run_and_loses_nothing(images):
    with InventoryServer(images=images[:2], images_per_listing=1) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run_sync(sitemap)
        sitemap.url = f"{server.base_url}/special/404.jpg"
        sitemap.save()

        run = run_sync(sitemap)

        assert run.status == "failed"
        assert "could not be read" in run.error
        assert Listing.objects.filter(is_gone=False).count() == 2


def test_run_sitemap_command_creates_the_sitemap_and_prints_json(images, capsys):
    with InventoryServer(images=images[:4], images_per_listing=2) as server:
        sitemap_url = server.sitemap_url
        call_command("run_sitemap", "--advertiser", "acme", "--url", sitemap_url, "--sync", "--json")

    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "succeeded"
    assert (out["urls"], out["downloaded"], out["failed"]) == (4, 4, 0)
    assert Sitemap.objects.get(advertiser__slug="acme").url == sitemap_url
