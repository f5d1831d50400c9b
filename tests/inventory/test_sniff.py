import gzip

import pytest

from catalog.inventory import Kind, read_inventory

from .helpers import url_entry, urlset


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (urlset(url_entry("https://s.example/a")), Kind.URLSET),
        (b"<!-- generated --><?xml-stylesheet href='s.xsl'?><sitemapindex/>", Kind.SITEMAP_INDEX),
        (b"<rss version='2.0'><channel/></rss>", Kind.RSS),
        (b"<feed xmlns='http://www.w3.org/2005/Atom'/>", Kind.ATOM),
        (b'\n  {"format": "imagetagger-feed/1", "listings": []}', Kind.FEED),
        (b"<!doctype html><title>x</title><img src=/a.jpg>", Kind.PAGE),
        (b"<HTML><body></body></HTML>", Kind.PAGE),
        (b"User-agent: *\nDisallow: /\n", Kind.ROBOTS),
        (b"https://s.example/a\nhttps://s.example/b\n", Kind.TEXT),
    ],
)
def test_kind_sniffed_from_the_bytes(data, kind):
    inventory = read_inventory([data], url="https://s.example/whatever")

    assert inventory.kind is kind


def test_file_name_does_not_decide():
    plain = urlset(url_entry("https://s.example/a"))

    assert read_inventory([plain], url="https://s.example/sitemap.xml.gz").pages[0].loc == "https://s.example/a"
    gzipped = gzip.compress(plain)
    assert read_inventory([gzipped], url="https://s.example/sitemap.txt").kind is Kind.URLSET


def test_gzip_magic_split_across_chunks():
    data = gzip.compress(b"https://s.example/a\n")

    inventory = read_inventory(iter([data[:1], b"", data[1:2], data[2:]]))

    assert [page.loc for page in inventory.pages] == ["https://s.example/a"]
