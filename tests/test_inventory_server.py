import gzip
import io
import struct
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import httpx
import pytest
from defusedxml import ElementTree
from PIL import Image

from catalog.inventory_server import (
    BOMB_SIZE,
    INVENTORY_SIZES,
    InventoryServer,
    make_inventory_images,
    make_jpeg,
)

SITEMAP_NS = {
    "sm": "http://www.sitemaps.org/schemas/sitemap/0.9",
    "image": "http://www.google.com/schemas/sitemap-image/1.1",
}


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return [make_jpeg(seed, width=160, height=120) for seed in range(7)]


@pytest.fixture
def server(images: list[bytes]) -> Iterator[InventoryServer]:
    with InventoryServer(images=images, images_per_listing=3) as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=10) as http:
        yield http


def test_make_jpeg_is_a_deterministic_jpeg_of_the_asked_size() -> None:
    data = make_jpeg(3, width=800, height=600)

    assert data == make_jpeg(3, width=800, height=600)
    assert data != make_jpeg(4, width=800, height=600)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        assert image.size == (800, 600)
        image.load()


def test_make_inventory_images_varies_sizes_and_reuses_its_cache(tmp_path) -> None:
    first = make_inventory_images(12, seed=5, cache_dir=tmp_path)

    sizes = {Image.open(io.BytesIO(data)).size for data in first}
    assert sizes <= set(INVENTORY_SIZES)
    assert len(sizes) > 1
    assert len(list(tmp_path.glob("5-*.jpg"))) == 12
    assert make_inventory_images(12, seed=5, cache_dir=tmp_path) == first
    assert make_inventory_images(12, seed=5) == first


def test_sitemap_lists_every_listing_with_its_images(server: InventoryServer, client: httpx.Client) -> None:
    response = client.get(server.sitemap_url)

    assert response.status_code == 200
    root = ElementTree.fromstring(response.content)
    listings = {
        url.findtext("sm:loc", namespaces=SITEMAP_NS): [
            loc.text for loc in url.findall("image:image/image:loc", namespaces=SITEMAP_NS)
        ]
        for url in root.findall("sm:url", namespaces=SITEMAP_NS)
    }
    base = server.base_url
    assert listings == {
        f"{base}/cars/0": [f"{base}/img/0/0.jpg", f"{base}/img/0/1.jpg", f"{base}/img/0/2.jpg"],
        f"{base}/cars/1": [f"{base}/img/0/3.jpg", f"{base}/img/0/4.jpg", f"{base}/img/0/5.jpg"],
        f"{base}/cars/2": [f"{base}/img/0/6.jpg"],
    }


def test_gzipped_sitemap_index_and_robots_point_at_the_sitemap(server: InventoryServer, client: httpx.Client) -> None:
    gzipped = client.get(f"{server.base_url}/sitemap.xml.gz")
    index = client.get(f"{server.base_url}/sitemap_index.xml")
    robots = client.get(f"{server.base_url}/robots.txt")

    assert gzip.decompress(gzipped.content) == client.get(server.sitemap_url).content
    locs = ElementTree.fromstring(index.content).findall("sm:sitemap/sm:loc", namespaces=SITEMAP_NS)
    assert [loc.text for loc in locs] == [server.sitemap_url]
    assert f"Sitemap: {server.sitemap_url}" in robots.text


def test_listing_page_shows_its_images(server: InventoryServer, client: httpx.Client) -> None:
    page = client.get(f"{server.base_url}/cars/1")

    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    for i in (3, 4, 5):
        assert f'<img src="{server.image_url(i)}"' in page.text
    assert client.get(f"{server.base_url}/cars/3").status_code == 404


def test_image_etag_round_trip(server: InventoryServer, client: httpx.Client, images: list[bytes]) -> None:
    first = client.get(server.image_url(2))

    assert first.status_code == 200
    assert first.content == images[2]
    assert first.headers["Content-Type"] == "image/jpeg"
    assert first.headers["Content-Length"] == str(len(images[2]))
    etag = first.headers["ETag"]
    assert etag.startswith('"g0-')
    assert len(etag) == len('"g0-') + 16 + 1
    assert "Last-Modified" in first.headers

    again = client.get(server.image_url(2), headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    other = client.get(server.image_url(2), headers={"If-None-Match": server.etag(3)})
    assert other.status_code == 200


def test_last_modified_round_trip(images: list[bytes], client: httpx.Client) -> None:
    with InventoryServer(images=images, validators="last-modified") as server:
        first = client.get(server.image_url(0))
        last_modified = first.headers["Last-Modified"]

        assert "ETag" not in first.headers
        assert last_modified == "Thu, 01 Jan 2026 00:00:00 GMT"
        same = {"If-Modified-Since": last_modified}
        assert client.get(server.image_url(0), headers=same).status_code == 304
        earlier = {"If-Modified-Since": "Wed, 31 Dec 2025 23:59:59 GMT"}
        assert client.get(server.image_url(0), headers=earlier).status_code == 200
        # Without an ETag validator the server ignores If-None-Match rather than answering 304 to "*".
        assert client.get(server.image_url(0), headers={"If-None-Match": "*"}).status_code == 200


def test_without_validators_every_request_downloads(images: list[bytes], client: httpx.Client) -> None:
    with InventoryServer(images=images, validators="none") as server:
        first = client.get(server.image_url(0))
        conditional = {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT", "If-None-Match": server.etag(0)}
        again = client.get(server.image_url(0), headers=conditional)

        assert "ETag" not in first.headers
        assert "Last-Modified" not in first.headers
        assert again.status_code == 200
        assert server.image_downloads == 2


def test_rename_changes_urls_and_etags_not_bytes(server: InventoryServer, client: httpx.Client) -> None:
    old_url = server.image_url(1)
    old = client.get(old_url)

    server.rename()

    new = client.get(server.image_url(1))
    assert server.image_url(1) == f"{server.base_url}/img/1/1.jpg"
    assert new.content == old.content
    assert new.headers["ETag"] != old.headers["ETag"]
    assert new.headers["Last-Modified"] != old.headers["Last-Modified"]
    assert client.get(old_url).status_code == 404
    assert client.get(server.image_url(1), headers={"If-None-Match": old.headers["ETag"]}).status_code == 200
    assert old_url not in client.get(server.sitemap_url).text
    assert server.image_url(1) in client.get(server.sitemap_url).text


def test_unknown_images_are_404(server: InventoryServer, client: httpx.Client) -> None:
    assert client.get(f"{server.base_url}/img/0/7.jpg").status_code == 404
    assert client.get(f"{server.base_url}/img/9/0.jpg").status_code == 404
    assert client.get(f"{server.base_url}/img/0/x.jpg").status_code == 404
    assert client.get(f"{server.base_url}/nowhere").status_code == 404


def test_counters_count(server: InventoryServer, client: httpx.Client) -> None:
    etag = client.get(server.image_url(0)).headers["ETag"]
    client.get(server.image_url(0), headers={"If-None-Match": etag})
    client.get(server.image_url(1))
    client.head(server.image_url(1))
    client.get(server.sitemap_url)

    assert (server.requests, server.image_downloads, server.not_modified) == (5, 2, 1)
    assert server.request_paths[-1] == "/sitemap.xml"

    server.reset_counters()

    assert (server.requests, server.image_downloads, server.not_modified) == (0, 0, 0)
    assert server.request_paths == []


def test_bomb_png_is_small_but_declares_a_huge_image(
    server: InventoryServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = client.get(f"{server.base_url}/special/bomb.png").content

    assert len(data) < 100_000
    width, height = struct.unpack(">II", data[16:24])  # IHDR, right after the signature and chunk header
    assert (width, height) == BOMB_SIZE
    assert width * height > 200_000_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with Image.open(io.BytesIO(data)) as image:  # only reads the header
        assert image.format == "PNG"
        assert image.size == BOMB_SIZE


def test_truncated_jpeg_fails_to_load(server: InventoryServer, client: httpx.Client) -> None:
    data = client.get(f"{server.base_url}/special/truncated.jpg").content

    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        with pytest.raises(OSError, match="truncated"):
            image.load()


def test_broken_and_hostile_special_routes(server: InventoryServer, client: httpx.Client) -> None:
    base = server.base_url

    assert client.get(f"{base}/special/404.jpg").status_code == 404
    redirect = client.get(f"{base}/special/redirect.jpg")
    assert redirect.status_code == 302
    assert redirect.headers["Location"] == "/img/0/0.jpg"
    private = client.get(f"{base}/special/redirect-private.jpg")
    assert private.headers["Location"] == "http://169.254.169.254/latest/meta-data/"
    html = client.get(f"{base}/special/html.jpg")
    assert html.headers["Content-Type"] == "image/jpeg"
    assert html.content.startswith(b"<!doctype html>")


def test_flaky_fails_once_then_serves(server: InventoryServer, client: httpx.Client) -> None:
    url = f"{server.base_url}/special/flaky.jpg"

    assert client.get(url).status_code == 503
    second = client.get(url)
    assert second.status_code == 200
    assert second.content == server.images[0]
    server.reset_counters()
    assert client.get(url).status_code == 503


def test_big_body_declares_30_mb_and_the_client_can_stop_early(server: InventoryServer, client: httpx.Client) -> None:
    with client.stream("GET", f"{server.base_url}/special/big.jpg") as response:
        assert int(response.headers["Content-Length"]) == 30 * 1024 * 1024
        head = next(response.iter_bytes())
    assert head.startswith(b"\xff\xd8\xff")
    assert client.get(server.sitemap_url).status_code == 200  # the server shrugged off the hang-up


def test_slow_image_outlasts_a_read_timeout(server: InventoryServer) -> None:
    impatient = httpx.Client(trust_env=False, timeout=httpx.Timeout(5, read=0.3))
    with impatient, pytest.raises(httpx.ReadTimeout):
        impatient.get(f"{server.base_url}/special/slow.jpg")


def test_delay_slows_image_responses(images: list[bytes], client: httpx.Client) -> None:
    with InventoryServer(images=images, delay=0.2) as server:
        started = time.monotonic()
        client.get(server.image_url(0))
        assert time.monotonic() - started >= 0.2


def test_add_route_serves_a_custom_handler(server: InventoryServer, client: httpx.Client) -> None:
    def teapot(request: BaseHTTPRequestHandler) -> None:
        request.send_response(418)
        request.end_headers()
        request.wfile.write(b"short and stout")

    server.add_route("/teapot", teapot)

    response = client.get(f"{server.base_url}/teapot?x=1")
    assert response.status_code == 418
    assert response.content == b"short and stout"


def test_stop_drops_kept_alive_connections(images: list[bytes], client: httpx.Client) -> None:
    server = InventoryServer(images=images).start()
    url = server.image_url(0)
    assert client.get(url).status_code == 200

    server.stop()

    with pytest.raises(httpx.TransportError):
        client.get(url)
