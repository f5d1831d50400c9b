"""A page that is not an inventory never makes an inventory disappear (issue 10, section 1).

Real Runs over the local HTTP server: an index's child that answers 200 with HTML, a retired sitemap URL
that redirects to the homepage, and a top-level sitemap URL that answers HTML are errors recorded on the
Run, and no listing or placement is marked gone.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from catalog.apis import RunOutputSerializer
from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import Listing, Placement, Run, Sitemap
from catalog.services.runs import run_execute, run_start
from tests.factories import SitemapFactory

pytestmark = pytest.mark.django_db(transaction=True)

NOT_AN_INVENTORY = "expected a sitemap, feed or robots.txt, got an HTML page"
HOMEPAGE = (
    b"<!doctype html><html><head><title>Dealer</title>"
    b'<meta property="og:image" content="/static/banner.jpg"></head>'
    b'<body><img src="/static/logo.png"><img src="/static/hero.jpg"></body></html>'
)


def run_sync(sitemap: Sitemap) -> Run:
    run = run_start(sitemap=sitemap, enqueue=False)
    run_execute(run_id=run.pk, inline=True)
    run.refresh_from_db()
    return run


def respond(status: int, body: bytes = b"", *, content_type: str = "text/html", location: str = "") -> Callable:
    def handler(request):
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        if location:
            request.send_header("Location", location)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handler


def urlset_of(server: InventoryServer, listings: range) -> bytes:
    entries = "".join(
        f"<url><loc>{server.listing_url(k)}</loc>"
        + "".join(
            f"<image:image><image:loc>{server.image_url(i)}</image:loc></image:image>" for i in server.listing_images(k)
        )
        + "</url>"
        for k in listings
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        f'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">{entries}</urlset>'
    ).encode()


def live_state() -> dict[str, tuple[bool, int]]:
    return {
        listing.url: (listing.is_gone, listing.placements.filter(is_gone=True).count())
        for listing in Listing.objects.prefetch_related("placements")
    }


@pytest.fixture(scope="module")
def images():
    return make_inventory_images(4, seed=3)


def test_a_child_sitemap_answering_html_is_an_error_and_nothing_is_gone(images):
    with InventoryServer(images=images, images_per_listing=1) as server:
        index = (
            '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<sitemap><loc>{server.base_url}/cars-a.xml</loc></sitemap>"
            f"<sitemap><loc>{server.base_url}/cars-b.xml</loc></sitemap></sitemapindex>"
        ).encode()
        server.add_route("/index.xml", respond(200, index, content_type="application/xml"))
        server.add_route("/cars-a.xml", respond(200, urlset_of(server, range(2)), content_type="application/xml"))
        server.add_route("/cars-b.xml", respond(200, urlset_of(server, range(2, 4)), content_type="application/xml"))
        sitemap = SitemapFactory(url=f"{server.base_url}/index.xml")
        first = run_sync(sitemap)
        assert (first.status, first.listings, first.source_errors) == ("succeeded", 4, [])

        server.add_route("/cars-b.xml", respond(200, HOMEPAGE))  # the CMS answers its error page with 200
        second = run_sync(sitemap)

        assert second.status == "partial"
        assert any(
            error.startswith(f"child {server.base_url}/cars-b.xml: ") and NOT_AN_INVENTORY in error
            for error in second.source_errors
        ), second.source_errors
        assert second.listings == 2
        assert live_state() == {server.listing_url(k): (False, 0) for k in range(4)}
        assert not Placement.objects.filter(url__contains="/static/").exists()


def test_a_retired_sitemap_redirecting_to_the_homepage_is_an_error_and_nothing_is_gone(images):
    with InventoryServer(images=images, images_per_listing=2) as server:
        server.add_route("/", respond(200, HOMEPAGE))
        sitemap = SitemapFactory(url=server.sitemap_url)
        first = run_sync(sitemap)
        assert (first.status, first.listings) == ("succeeded", 2)

        server.add_route("/sitemap.xml", respond(301, location="/"))  # retired: sent to the homepage
        second = run_sync(sitemap)

        assert second.status == "failed"
        assert NOT_AN_INVENTORY in second.error
        assert f"redirected to {server.base_url}/" in second.error
        assert live_state() == {server.listing_url(k): (False, 0) for k in range(2)}
        assert not Placement.objects.filter(url__contains="/static/").exists()


def test_a_top_level_sitemap_answering_html_is_an_error_and_nothing_is_gone(images):
    with InventoryServer(images=images, images_per_listing=2) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        first = run_sync(sitemap)
        assert (first.status, first.listings) == ("succeeded", 2)

        # The robots.txt of this server lists a sitemap: even so, a sitemap URL is never swapped for another.
        server.add_route("/sitemap.xml", respond(200, HOMEPAGE))
        second = run_sync(sitemap)

        assert second.status == "failed"
        assert NOT_AN_INVENTORY in second.error
        assert live_state() == {server.listing_url(k): (False, 0) for k in range(2)}
        assert Listing.objects.count() == 2


def test_only_a_page_sitemap_reads_html(images):
    with InventoryServer(images=images, images_per_listing=2) as server:
        sitemap = SitemapFactory(url=server.listing_url(1), kind=Sitemap.Kind.PAGE)
        run = run_sync(sitemap)
        assert (run.status, run.listings, run.urls) == ("succeeded", 1, 2)


def test_repairs_are_warnings_on_the_run_and_a_repaired_read_is_complete(images):
    with InventoryServer(images=images, images_per_listing=2) as server:
        sitemap = SitemapFactory(url=f"{server.base_url}/cars.xml")
        server.add_route("/cars.xml", respond(200, urlset_of(server, range(2)), content_type="application/xml"))
        run_sync(sitemap)

        repaired = urlset_of(server, range(1)).replace(b"/cars/0", b"/cars/0?make=Ford&model=F-150")
        server.add_route("/cars.xml", respond(200, repaired, content_type="application/xml"))
        second = run_sync(sitemap)

        assert second.status == "succeeded"
        assert second.source_errors == []
        assert len(second.source_warnings) == 1
        assert second.source_warnings[0].startswith("line 1: raw '&' kept as a literal '&'")
        answer = RunOutputSerializer(second).data  # what GET /api/runs/<id>/ answers
        assert (answer["source_errors"], answer["source_warnings"]) == ([], second.source_warnings)
        assert Listing.objects.get(url=f"{server.listing_url(0)}?make=Ford&model=F-150").is_gone is False
        assert Listing.objects.get(url=server.listing_url(1)).is_gone is True  # the read was complete
