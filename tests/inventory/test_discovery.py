"""Discovery of a site's sitemaps from its homepage, over the local HTTP server (issue 10, section 4)."""

from __future__ import annotations

import pytest

from catalog.fetching import SafeFetcher
from catalog.inventory import Kind, NotAnInventory
from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.sources import fetch_policy, source_read_url

from .test_never_gone import HOMEPAGE, respond, urlset_of


@pytest.fixture(scope="module")
def images():
    return make_inventory_images(4, seed=11)


def read_site(url: str, expect: str = "sitemap"):
    with SafeFetcher(fetch_policy()) as fetcher:
        return source_read_url(url, fetcher=fetcher, expect=expect)


def expected_pages(server: InventoryServer) -> list[str]:
    return [server.listing_url(k) for k in range(server.listing_count)]


@pytest.mark.parametrize("path", ["", "/"])
def test_a_homepage_is_discovered_through_robots_txt(images, path):
    with InventoryServer(images=images, images_per_listing=2) as server:
        server.add_route("/", respond(200, HOMEPAGE))

        result = read_site(f"{server.base_url}{path}")

        assert result.kind is Kind.SITE
        # robots.txt's sitemap, then what the well-known paths hold besides (this server keeps a gzipped copy and
        # an index of it): /sitemap_index.xml's child is robots.txt's, read once and no repeat to warn about.
        base = server.base_url
        assert result.sitemaps == [server.sitemap_url, f"{base}/sitemap_index.xml", f"{base}/sitemap.xml.gz"]
        assert [page.loc for page in result.pages] == expected_pages(server)
        assert (result.errors, result.warnings) == ([], [])
        assert server.request_paths.count("/sitemap.xml") == 1
        assert "/" not in server.request_paths  # a site root is never read as listings


def not_found(server: InventoryServer, *paths: str) -> None:
    for path in paths:
        server.add_route(path, respond(404, b"not found", content_type="text/plain"))


SERVED_SITEMAPS = ("/sitemap.xml", "/sitemap.xml.gz", "/sitemap_index.xml")  # what the server answers by default


def test_robots_site_map_spelling_leads_to_the_sitemaps(images):
    with InventoryServer(images=images, images_per_listing=2) as server:
        not_found(server, *SERVED_SITEMAPS)
        robots = f"User-agent: *\nSite-map: {server.base_url}/cars.xml\n".encode()
        server.add_route("/robots.txt", respond(200, robots, content_type="text/plain"))
        server.add_route("/cars.xml", respond(200, urlset_of(server, range(2)), content_type="application/xml"))

        result = read_site(f"{server.base_url}/")

        assert result.sitemaps == [f"{server.base_url}/cars.xml"]
        assert [page.loc for page in result.pages] == expected_pages(server)


@pytest.mark.parametrize("well_known", ["/sitemap_index.xml", "/sitemap-index.xml", "/sitemaps.xml", "/wp-sitemap.xml"])
def test_without_robots_txt_the_well_known_paths_are_tried_and_a_404_is_no_error(images, well_known):
    with InventoryServer(images=images, images_per_listing=2) as server:
        not_found(server, "/robots.txt", *SERVED_SITEMAPS)
        server.add_route(well_known, respond(200, urlset_of(server, range(2)), content_type="application/xml"))

        result = read_site(f"{server.base_url}/")

        assert result.sitemaps == [f"{server.base_url}{well_known}"]
        assert [page.loc for page in result.pages] == expected_pages(server)
        assert (result.errors, result.warnings) == ([], [])
        assert server.request_paths.count(well_known) == 1  # read once, not again as a child


def test_a_sitemap_robots_txt_does_not_list_is_found_at_a_well_known_path_too(images):
    # ultimate-sitemap-parser probes the well-known paths beside robots.txt's sitemaps; we stopped at robots.txt.
    with InventoryServer(images=images, images_per_listing=1) as server:
        not_found(server, *SERVED_SITEMAPS)
        robots = f"User-agent: *\nSitemap: {server.base_url}/cars.xml\n".encode()
        server.add_route("/robots.txt", respond(200, robots, content_type="text/plain"))
        server.add_route("/cars.xml", respond(200, urlset_of(server, range(2)), content_type="application/xml"))
        server.add_route("/wp-sitemap.xml", respond(200, urlset_of(server, range(2, 4)), content_type="text/xml"))
        # A CMS that sends a well-known path to the listed sitemap: the same sitemap, listed once.
        server.add_route("/sitemap-index.xml", respond(301, location="/cars.xml"))

        result = read_site(f"{server.base_url}/")

        assert result.sitemaps == [f"{server.base_url}/cars.xml", f"{server.base_url}/wp-sitemap.xml"]
        assert [page.loc for page in result.pages] == expected_pages(server)
        assert (result.errors, result.warnings) == ([], [])


def test_a_failing_well_known_path_beside_robots_txt_sitemaps_is_a_warning(images):
    # robots.txt is the site's own word: a server that answers 500 for a path it never published must not keep
    # every read incomplete (then nothing is ever marked gone).
    with InventoryServer(images=images, images_per_listing=2) as server:
        not_found(server, "/sitemap.xml.gz", "/sitemap_index.xml")
        server.add_route("/wp-sitemap.xml", respond(500, b"oops", content_type="text/plain"))

        result = read_site(f"{server.base_url}/")

        assert result.sitemaps == [server.sitemap_url]
        assert result.complete
        assert [warning.split(": ")[0] for warning in result.warnings] == [f"{server.base_url}/wp-sitemap.xml"]
        assert "500" in result.warnings[0]


def test_a_homepage_html_page_that_is_not_the_root_is_discovered_too(images):
    with InventoryServer(images=images, images_per_listing=2) as server:
        server.add_route("/en/", respond(200, HOMEPAGE))

        result = read_site(f"{server.base_url}/en/")

        assert result.kind is Kind.SITE
        assert [page.loc for page in result.pages] == expected_pages(server)


def test_a_homepage_without_any_sitemap_is_the_not_an_inventory_error(images):
    with InventoryServer(images=images, images_per_listing=2) as server:
        server.add_route("/", respond(200, HOMEPAGE))
        not_found(server, "/robots.txt", *SERVED_SITEMAPS)

        with pytest.raises(NotAnInventory, match=r"got an HTML page \(no sitemap found in robots\.txt"):
            read_site(f"{server.base_url}/")


def test_a_robots_txt_that_fails_is_an_error_so_nothing_is_marked_gone(images):
    with InventoryServer(images=images, images_per_listing=2) as server:
        server.add_route("/robots.txt", respond(500, b"oops", content_type="text/plain"))

        result = read_site(f"{server.base_url}/")

        assert [page.loc for page in result.pages] == expected_pages(server)  # /sitemap.xml was found
        assert not result.complete
        assert "robots.txt" in result.errors[0]
        assert "500" in result.errors[0]


def test_a_page_source_reads_the_html_and_discovers_nothing(images):
    with InventoryServer(images=images, images_per_listing=2) as server:
        result = read_site(server.listing_url(0), expect="page")

        assert (result.kind, len(result.pages), result.pages[0].images) == (
            Kind.PAGE,
            1,
            [server.image_url(i) for i in server.listing_images(0)],
        )
