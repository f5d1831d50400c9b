import gzip

import pytest

from catalog.inventory import InventoryRefused, Kind, read_inventory

from .helpers import chunked


def test_plain_text_sitemap():
    data = b"https://s.example/a\r\n\n  https://s.example/b  \nnot a url\nftp://s.example/c\nhttps://s.example/d"

    inventory = read_inventory(chunked(data, 3))

    assert inventory.kind is Kind.TEXT
    assert [page.loc for page in inventory.pages] == [
        "https://s.example/a",
        "https://s.example/b",
        "https://s.example/d",
    ]
    assert all(page.images == [] for page in inventory.pages)
    assert inventory.errors == []
    assert inventory.warnings == ["2 lines skipped: not http(s) URLs (first: 'not a url')"]


def test_gzipped_text_sitemap_with_bom():
    data = gzip.compress("\ufeffhttps://s.example/caf\u00e9\nhttps://s.example/b\n".encode())

    inventory = read_inventory([data])

    assert [page.loc for page in inventory.pages] == ["https://s.example/caf\u00e9", "https://s.example/b"]


def test_robots_sitemap_lines_anywhere_any_case():
    data = (
        b"# robots for s.example\n"
        b"User-agent: *\nDisallow: /cart\n"
        b"SITEMAP: https://s.example/sitemap-index.xml\n\n"
        b"User-agent: Googlebot\nAllow: /\n"
        b"  sitemap:https://s.example/products.xml.gz # products\n"
        b"Sitemap: /relative-sitemap.xml\n"
        b"Sitemap: https://s.example/sitemap-index.xml\n"
    )

    inventory = read_inventory(chunked(data, 10), url="https://s.example/robots.txt")

    assert inventory.kind is Kind.ROBOTS
    assert inventory.sitemaps == [
        "https://s.example/sitemap-index.xml",
        "https://s.example/products.xml.gz",
        "https://s.example/relative-sitemap.xml",
    ]
    assert inventory.pages == []


def test_robots_recognised_by_url_alone():
    data = b"# nothing but comments here\n# Sitemaps are listed elsewhere\n"

    inventory = read_inventory([data], url="https://s.example/robots.txt")

    assert inventory.kind is Kind.ROBOTS
    assert inventory.sitemaps == []


def test_robots_with_a_bad_sitemap_line():
    data = b"User-agent: *\nSitemap: javascript:alert(1)\nSitemap: https://s.example/s.xml\n"

    inventory = read_inventory([data])

    assert inventory.sitemaps == ["https://s.example/s.xml"]
    assert inventory.errors == [
        "robots.txt Sitemap line: unsupported scheme 'javascript' (only http and https): 'javascript:alert(1)'"
    ]


def test_empty_document_refused():
    with pytest.raises(InventoryRefused, match=r"^empty document$"):
        read_inventory([b"", b" \n\t ", b"\xef\xbb\xbf"])


def test_empty_gzip_refused():
    with pytest.raises(InventoryRefused, match=r"^empty document$"):
        read_inventory([gzip.compress(b"")])


def test_prose_refused():
    with pytest.raises(InventoryRefused, match=r"^not a sitemap, feed, robots.txt or HTML page$"):
        read_inventory([b"Hello,\nthis is just a letter.\nno link at all\nRegards\n"])


def test_prose_with_a_link_keeps_the_link_and_records_an_error():
    inventory = read_inventory([b"Hello,\nthis is just a letter.\nhttps://s.example/a\nRegards\n"])

    assert [page.loc for page in inventory.pages] == ["https://s.example/a"]
    assert inventory.errors == ["3 lines skipped: not http(s) URLs (first: 'Hello,')"]
