"""python manage.py inspect_sitemap: what a newcomer or an analyst sees of any inventory source."""

import gzip
import json
import subprocess
import sys

import pytest
from django.conf import settings

from catalog.inventory_server import InventoryServer, make_inventory_images

SITEMAP = b"""\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url><loc> https://dealer.example/cars/1?a=1&amp;b=2 </loc>
    <image:image><image:loc>https://cdn.example/1/a.jpg</image:loc></image:image>
    <image:image><image:loc>https://cdn.example/1/b.jpg</image:loc><image:caption>old tag</image:caption></image:image>
  </url>
  <url><loc>https://dealer.example/cars/2</loc><lastmod>yesterday</lastmod></url>
</urlset>
"""
INDEX = b"""<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<sitemap><loc>https://dealer.example/sitemap-1.xml</loc></sitemap>
<sitemap><loc>https://dealer.example/sitemap-2.xml.gz</loc></sitemap>
</sitemapindex>"""
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<urlset><url><loc>&lol2;</loc></url></urlset>"""


def inspect(*args: str) -> subprocess.CompletedProcess:
    env = {"DJANGO_SETTINGS_MODULE": "config.settings.test", "FETCH_ALLOW_NETWORKS": "127.0.0.0/8", "PATH": ""}
    return subprocess.run(
        [sys.executable, "manage.py", "inspect_sitemap", *args],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_json_lists_pages_and_images_in_document_order(tmp_path):
    path = tmp_path / "sitemap.xml.gz.bin"  # gzip is recognised by its bytes, not its name
    path.write_bytes(gzip.compress(SITEMAP))

    result = inspect(str(path), "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "kind": "urlset",
        "pages": [
            {
                "loc": "https://dealer.example/cars/1?a=1&b=2",
                "images": ["https://cdn.example/1/a.jpg", "https://cdn.example/1/b.jpg"],
            },
            {"loc": "https://dealer.example/cars/2", "images": []},
        ],
        "sitemaps": [],
        "errors": [],
        "warnings": [],
    }


def test_a_local_index_lists_its_children_without_fetching_them(tmp_path):
    path = tmp_path / "index.xml"
    path.write_bytes(INDEX)

    out = json.loads(inspect(str(path), "--json").stdout)

    assert out["kind"] == "sitemapindex"
    assert out["sitemaps"] == ["https://dealer.example/sitemap-1.xml", "https://dealer.example/sitemap-2.xml.gz"]
    assert out["pages"] == []


def test_a_url_index_is_followed_through_robots_txt():
    with InventoryServer(images=make_inventory_images(4, seed=5), images_per_listing=2) as server:
        result = inspect(f"{server.base_url}/robots.txt", "--json")
        expected_pages = [
            {"loc": server.listing_url(k), "images": [server.image_url(i) for i in server.listing_images(k)]}
            for k in range(2)
        ]
        sitemap_url = server.sitemap_url

    out = json.loads(result.stdout)
    assert (out["kind"], out["sitemaps"], out["pages"]) == ("robots", [sitemap_url], expected_pages)


def test_hostile_input_is_refused_with_one_line_on_stderr(tmp_path):
    path = tmp_path / "lol.xml"
    path.write_bytes(BILLION_LAUGHS)

    result = inspect(str(path), "--json")

    assert result.returncode != 0
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "entit" in result.stderr.lower()


def test_a_private_address_is_refused_before_any_connection():
    result = inspect("http://169.254.169.254/latest/meta-data/")
    assert result.returncode != 0
    assert "link-local" in result.stderr or "169.254.169.254" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("location", ["/no/such/file.xml", "ftp://dealer.example/sitemap.xml"])
def test_unreadable_locations_fail_with_a_clear_line(location):
    result = inspect(location)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1


def test_text_report_summarises_what_was_read(tmp_path):
    path = tmp_path / "sitemap.xml"
    path.write_bytes(SITEMAP)
    out = inspect(str(path)).stdout
    assert "kind: urlset" in out
    assert "pages: 2  images: 2" in out
    assert "https://dealer.example/cars/1?a=1&b=2  (2 images)" in out
    assert "https://dealer.example/cars/2  (0 images)" in out


def test_text_report_says_one_image_and_one_page_in_the_singular(tmp_path):
    # It printed "(1 images)".
    pages = "".join(
        f"<url><loc>https://dealer.example/cars/{n}</loc><image:image><image:loc>https://cdn.example/{n}.jpg"
        "</image:loc></image:image></url>"
        for n in range(21)
    )
    path = tmp_path / "sitemap.xml"
    path.write_text(
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        f'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">{pages}</urlset>'
    )
    out = inspect(str(path)).stdout
    assert "https://dealer.example/cars/0  (1 image)" in out
    assert "images)" not in out
    assert "... 1 more page (use --json for all)" in out


@pytest.mark.parametrize(
    ("location", "scheme"),
    [("file:///etc/passwd", "file"), ("gopher://dealer.example/x", "gopher"), ("ftp://dealer.example/s.xml", "ftp")],
)
def test_other_schemes_are_refused_by_name(location, scheme):
    result = inspect(location)

    assert result.returncode != 0
    assert (
        result.stderr.strip()
        == f"CommandError: refused {location}: unsupported scheme '{scheme}' (only http and https)"
    )


def test_a_host_idna_rejects_is_refused_in_one_line():
    result = inspect("http://.xn--iaur-yva35b.lt/sitemap.xml")

    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not a valid domain name" in result.stderr


def test_repairs_are_shown_as_warnings_and_the_read_goes_on(tmp_path):
    path = tmp_path / "sitemap.xml"
    path.write_bytes(
        b'<?xml version="1.0" encoding="utf8mb4"?><urlset>'
        b"<url><loc>https://dealer.example/search?make=Ford&model=F-150</loc></url>"
        b"<url><loc>https://dealer.example/caf\xe9&nbsp;2</loc></url></urlset>"
    )

    out = json.loads(inspect(str(path), "--json").stdout)
    text = inspect(str(path)).stdout

    assert [page["loc"] for page in out["pages"]] == [
        "https://dealer.example/search?make=Ford&model=F-150",
        "https://dealer.example/caf\u00e9\u00a02",
    ]
    assert out["errors"] == []
    assert len(out["warnings"]) == 3
    assert "warnings (repaired, read on): 3" in text


@pytest.mark.parametrize("encoding", ["Shift_JIS", "EUC-JP", "UTF-16"])
def test_declared_encodings_are_read(tmp_path, encoding):
    path = tmp_path / "sitemap.xml"
    path.write_bytes(
        f'<?xml version="1.0" encoding="{encoding}"?><urlset><url><loc>https://dealer.example/車</loc></url></urlset>'.encode(
            encoding
        )
    )

    result = inspect(str(path), "--json")

    assert result.returncode == 0, result.stderr
    assert [page["loc"] for page in json.loads(result.stdout)["pages"]] == ["https://dealer.example/車"]


def test_an_undecodable_document_is_refused_in_one_line(tmp_path):
    path = tmp_path / "sitemap.xml"
    path.write_bytes('<?xml version="1.0" encoding="x-nope"?><urlset><loc>車</loc></urlset>'.encode("shift_jis"))

    result = inspect(str(path))

    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"CommandError: refused {path}: unknown encoding 'x-nope' (and the document is not UTF-8)"
    ]


def test_a_homepage_is_discovered_and_a_product_page_is_read_with_kind_page():
    with InventoryServer(images=make_inventory_images(4, seed=5), images_per_listing=2) as server:
        homepage = json.loads(inspect(f"{server.base_url}/", "--json").stdout)
        page = json.loads(inspect(server.listing_url(1), "--kind", "page", "--json").stdout)
        listing_urls = [server.listing_url(k) for k in range(2)]

    assert (homepage["kind"], [p["loc"] for p in homepage["pages"]]) == ("site", listing_urls)
    assert (page["kind"], len(page["pages"][0]["images"])) == ("page", 2)
