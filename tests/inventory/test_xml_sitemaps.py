import gzip
import zlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from catalog.inventory import InventoryRefused, Kind, read_inventory

from .helpers import big_sitemap, chunked, url_entry, urlset


def test_image_sitemap_pages_and_images_in_document_order():
    data = urlset(
        url_entry("https://shop.example/a", "https://cdn.example/a1.jpg", "https://cdn.example/a2.jpg"),
        url_entry("https://shop.example/b"),
        url_entry("https://shop.example/c", "https://cdn.example/c1.jpg"),
    )

    inventory = read_inventory(chunked(data, 7))

    assert inventory.kind is Kind.URLSET
    assert [(page.loc, page.images) for page in inventory.pages] == [
        ("https://shop.example/a", ["https://cdn.example/a1.jpg", "https://cdn.example/a2.jpg"]),
        ("https://shop.example/b", []),
        ("https://shop.example/c", ["https://cdn.example/c1.jpg"]),
    ]
    assert inventory.sitemaps == []
    assert inventory.errors == []


def test_to_json():
    data = urlset(url_entry("https://shop.example/a", "https://cdn.example/a1.jpg"))

    payload = read_inventory([data]).to_json()

    assert payload["kind"] == "urlset"
    assert payload["pages"][0]["loc"] == "https://shop.example/a"
    assert payload["pages"][0]["images"] == ["https://cdn.example/a1.jpg"]
    assert payload["sitemaps"] == []
    assert payload["errors"] == []


def test_images_deduplicated_within_a_page():
    data = urlset(url_entry("https://s.example/a", "https://c.example/1.jpg", "https://c.example/1.jpg"))

    assert read_inventory([data]).pages[0].images == ["https://c.example/1.jpg"]


def test_deprecated_image_tags_are_ignored():
    entry = (
        "<url><loc>https://s.example/a</loc><image:image><image:loc>https://c.example/1.jpg</image:loc>"
        "<image:caption>A red car</image:caption><image:title>Car</image:title>"
        "<image:geo_location>Berlin</image:geo_location><image:license>https://l.example/</image:license>"
        "</image:image></url>"
    )

    inventory = read_inventory([urlset(entry)])

    assert inventory.pages[0].images == ["https://c.example/1.jpg"]
    assert inventory.errors == []


def test_image_cap_per_page_drops_extras_and_records_an_error():
    images = [f"https://c.example/{n}.jpg" for n in range(1005)]
    data = urlset(url_entry("https://s.example/a", *images), url_entry("https://s.example/b", images[0]))

    inventory = read_inventory([data])

    assert inventory.pages[0].images == images[:1000]
    assert inventory.pages[1].images == images[:1]
    assert inventory.errors == ["https://s.example/a: 1005 images, only the first 1000 kept"]


def test_image_cap_is_configurable():
    data = urlset(url_entry("https://s.example/a", "https://c.example/1.jpg", "https://c.example/2.jpg"))

    inventory = read_inventory([data], max_images_per_page=1)

    assert inventory.pages[0].images == ["https://c.example/1.jpg"]
    assert len(inventory.errors) == 1


def test_no_namespace_at_all():
    data = b"<urlset><url><loc>https://s.example/a</loc></url><url><loc>https://s.example/b</loc></url></urlset>"

    inventory = read_inventory([data])

    assert inventory.kind is Kind.URLSET
    assert [page.loc for page in inventory.pages] == ["https://s.example/a", "https://s.example/b"]


def test_wrong_namespace_and_other_image_prefix_tolerated():
    data = (
        b'<urlset xmlns="http://www.google.com/schemas/sitemap/0.84" xmlns:img="urn:whatever">'
        b"<url><loc>https://s.example/a</loc><img:image><img:loc>https://c.example/1.jpg</img:loc></img:image>"
        b"</url></urlset>"
    )

    inventory = read_inventory([data])

    assert inventory.pages[0].images == ["https://c.example/1.jpg"]


def test_whitespace_stripped_entities_decoded_and_bom_accepted():
    data = b"\xef\xbb\xbf" + urlset(
        url_entry("\n   https://s.example/a?x=1&amp;y=2   \n", "  https://c.example/1.jpg?w=1&amp;h=2\t")
    )

    inventory = read_inventory([data])

    assert inventory.pages[0].loc == "https://s.example/a?x=1&y=2"
    assert inventory.pages[0].images == ["https://c.example/1.jpg?w=1&h=2"]


def test_leading_whitespace_before_xml_declaration_accepted():
    data = b"\n\n  " + urlset(url_entry("https://s.example/a"))

    assert [page.loc for page in read_inventory([data]).pages] == ["https://s.example/a"]


@pytest.mark.parametrize(
    ("lastmod", "expected"),
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T10:20:30+02:00", datetime(2024, 5, 1, 8, 20, 30, tzinfo=UTC)),
        ("2024-05-01T10:20Z", datetime(2024, 5, 1, 10, 20, tzinfo=UTC)),
        ("2024-05-01T10:20:30", datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC)),
        ("2024-05", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024", datetime(2024, 1, 1, tzinfo=UTC)),
        ("yesterday", None),
        ("2024-13-45", None),
        ("", None),
    ],
)
def test_lastmod(lastmod, expected):
    data = urlset(url_entry("https://s.example/a", extra=f"<lastmod>{lastmod}</lastmod>"))

    page = read_inventory([data]).pages[0]

    assert page.lastmod == expected
    if page.lastmod is not None:
        assert page.lastmod.tzinfo is not None


def test_lastmod_keeps_its_offset():
    data = urlset(url_entry("https://s.example/a", extra="<lastmod>2024-05-01T10:00:00-05:00</lastmod>"))

    lastmod = read_inventory([data]).pages[0].lastmod

    assert lastmod is not None
    assert lastmod.utcoffset() == timezone(timedelta(hours=-5)).utcoffset(None)


def test_invalid_priority_and_changefreq_ignored():
    extra = "<changefreq>sometimes</changefreq><priority>very high</priority>"
    data = urlset(url_entry("https://s.example/a", "https://c.example/1.jpg", extra=extra))

    inventory = read_inventory([data])

    assert inventory.pages[0].images == ["https://c.example/1.jpg"]
    assert inventory.errors == []


def test_non_http_urls_dropped_with_errors():
    data = urlset(
        url_entry("javascript:alert(1)", "https://c.example/1.jpg"),
        url_entry("https://s.example/b", "file:///etc/passwd", "https://c.example/2.jpg"),
        url_entry("https://s.example/" + "x" * 3000),
    )

    inventory = read_inventory([data])

    assert [(page.loc, page.images) for page in inventory.pages] == [
        ("https://s.example/b", ["https://c.example/2.jpg"])
    ]
    assert len(inventory.errors) == 3
    assert "unsupported scheme 'javascript' (only http and https)" in inventory.errors[0]
    assert "javascript:alert(1)" in inventory.errors[0]
    assert "unsupported scheme 'file' (only http and https)" in inventory.errors[1]
    assert "file:///etc/passwd" in inventory.errors[1]
    assert "longer than 2048" in inventory.errors[2]


def test_relative_loc_resolved_against_the_document_url():
    data = urlset(url_entry("/cars/1", "/img/1.jpg"))

    inventory = read_inventory([data], url="https://dealer.example/sitemap.xml")

    assert inventory.pages[0].loc == "https://dealer.example/cars/1"
    assert inventory.pages[0].images == ["https://dealer.example/img/1.jpg"]


def test_sitemap_index():
    data = (
        b'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<sitemap><loc> https://s.example/sitemap-1.xml </loc><lastmod>2024-01-01</lastmod></sitemap>"
        b"<sitemap><loc>https://s.example/sitemap-2.xml.gz</loc></sitemap>"
        b"</sitemapindex>"
    )

    inventory = read_inventory(chunked(data, 5))

    assert inventory.kind is Kind.SITEMAP_INDEX
    assert inventory.sitemaps == ["https://s.example/sitemap-1.xml", "https://s.example/sitemap-2.xml.gz"]
    assert inventory.pages == []


def test_truncated_xml_keeps_complete_entries_and_records_the_error():
    entries = [url_entry(f"https://s.example/{n}", f"https://c.example/{n}.jpg") for n in range(120)]
    data = urlset(*entries)
    cut = data.index(b"https://s.example/119") - 9  # inside the last <url>

    inventory = read_inventory(chunked(data[:cut], 4096))

    assert len(inventory.pages) == 119
    assert inventory.pages[-1].images == ["https://c.example/118.jpg"]
    assert len(inventory.errors) == 1
    assert inventory.errors[0].startswith("XML error after 119 entries: ")
    assert "line" in inventory.errors[0]


def test_broken_xml_in_the_middle_keeps_earlier_entries():
    data = urlset(
        url_entry("https://s.example/a"),
        "<url><loc>https://s.example/b</oops></url>",
        url_entry("https://s.example/c"),
    )

    inventory = read_inventory([data])

    assert [page.loc for page in inventory.pages] == ["https://s.example/a"]
    assert "mismatched tag" in inventory.errors[0]


def test_gzipped_sitemap_detected_by_magic_bytes():
    data = gzip.compress(urlset(url_entry("https://s.example/a", "https://c.example/1.jpg")))

    inventory = read_inventory(chunked(data, 10), url="https://s.example/sitemap.xml")

    assert inventory.pages[0].images == ["https://c.example/1.jpg"]


def test_truncated_gzip_keeps_what_was_inflated():
    entries = [url_entry(f"https://s.example/{n}") for n in range(2000)]
    data = gzip.compress(urlset(*entries))

    inventory = read_inventory([data[: len(data) // 2]])

    assert 0 < len(inventory.pages) < 2000
    assert [page.loc for page in inventory.pages[:2]] == ["https://s.example/0", "https://s.example/1"]
    assert any("gzip stream truncated" in error for error in inventory.errors)
    assert any(error.startswith("XML error after") for error in inventory.errors)


def test_fifty_thousand_urls():
    inventory = read_inventory(chunked(big_sitemap(50_000), 64 * 1024))

    assert len(inventory.pages) == 50_000
    assert sum(len(page.images) for page in inventory.pages) == 75_000
    assert inventory.pages[49_999].loc == "https://shop.example.com/p/49999"
    assert inventory.pages[49_999].images == [
        "https://cdn.example.com/p/49999/0.jpg",
        "https://cdn.example.com/p/49999/1.jpg",
    ]
    assert inventory.errors == []


# -- hostile input ------------------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<urlset><url><loc>https://s.example/&lol4;</loc></url></urlset>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<urlset><url><loc>https://s.example/&xxe;</loc></url></urlset>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY % remote SYSTEM "http://evil.example/x.dtd"> %remote;]>
<urlset><url><loc>https://s.example/a</loc></url></urlset>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE urlset SYSTEM "http://evil.example/sitemap.dtd">
<urlset><url><loc>https://s.example/a</loc></url></urlset>"""


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (BILLION_LAUGHS, "internal subset"),
        (XXE, "internal subset"),
        (PARAMETER_ENTITY, "internal subset"),
    ],
    ids=["billion-laughs", "xxe", "parameter-entity"],
)
def test_hostile_xml_refused(document, reason):
    with pytest.raises(InventoryRefused, match=reason) as caught:
        read_inventory(chunked(document, 16))

    assert "\n" not in str(caught.value)
    assert "root:" not in str(caught.value)  # never the content of /etc/passwd


def test_hostile_xml_refused_inside_gzip():
    with pytest.raises(InventoryRefused, match="internal subset"):
        read_inventory([gzip.compress(BILLION_LAUGHS)])


def test_plain_doctype_without_subset_tolerated():
    data = b'<?xml version="1.0"?><!DOCTYPE urlset><urlset><url><loc>https://s.example/a</loc></url></urlset>'

    assert [page.loc for page in read_inventory([data]).pages] == ["https://s.example/a"]


def test_an_external_dtd_is_named_only_never_loaded():
    # Parameter entity parsing is off: the DTD is never fetched, so naming one is harmless (issue 10).
    inventory = read_inventory([EXTERNAL_DTD])

    assert [page.loc for page in inventory.pages] == ["https://s.example/a"]


def test_undefined_entity_is_kept_literally_not_expanded():
    data = urlset(url_entry("https://s.example/a"), url_entry("https://s.example/&nope;"))

    inventory = read_inventory([data])

    assert [page.loc for page in inventory.pages] == ["https://s.example/a", "https://s.example/&nope;"]
    assert inventory.errors == []
    assert inventory.warnings == ["line 4: unknown entity '&nope;' kept literally"]


def _gzip_bomb(prefix: bytes, filler: bytes, megabytes: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = (filler * (1024 * 1024 // len(filler)))[: 1024 * 1024]
    parts = [compressor.compress(prefix)]
    parts.extend(compressor.compress(block) for _ in range(megabytes))
    return b"".join(parts) + compressor.flush()


class _CountingBody:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pieces_read = 0
        self.pieces = len(data) // 1024 + 1

    def __iter__(self):
        for start in range(0, len(self.data), 1024):
            self.pieces_read += 1
            yield self.data[start : start + 1024]


@pytest.mark.parametrize(
    ("prefix", "filler"),
    [(b"<urlset><url><loc>https://s.example/a</loc></url>", b" "), (b"", b"https://s.example/a\n")],
    ids=["xml", "text"],
)
def test_gzip_bomb_refused_by_the_inflated_size_cap(prefix, filler):
    body = _CountingBody(_gzip_bomb(prefix, filler, 20))
    assert len(body.data) < 200_000

    with pytest.raises(InventoryRefused, match="gzip inflated size exceeds 1048576 bytes"):
        read_inventory(body, max_inflated_bytes=1024 * 1024)

    assert body.pieces_read < body.pieces // 2  # stopped well before the end of the bomb


def test_gzip_of_zeros_refused_early():
    body = _CountingBody(_gzip_bomb(b"", b"\0", 20))

    # Zeros are not a document: refused as soon as the first inflated bytes are sniffed.
    with pytest.raises(InventoryRefused):
        read_inventory(body, max_inflated_bytes=1024 * 1024)

    assert body.pieces_read < body.pieces // 2


def test_plain_document_over_the_size_cap_refused():
    data = urlset(*(url_entry(f"https://s.example/{n}") for n in range(1000)))

    with pytest.raises(InventoryRefused, match="document size exceeds 10000 bytes"):
        read_inventory(chunked(data, 1000), max_inflated_bytes=10_000)


def test_unknown_xml_root_refused():
    with pytest.raises(InventoryRefused, match=r"not a sitemap, feed, robots.txt or HTML page \(root element"):
        read_inventory([b"<?xml version='1.0'?><catalog><item/></catalog>"])


def test_not_well_formed_before_the_root_refused():
    with pytest.raises(InventoryRefused, match="not well-formed XML"):
        read_inventory([b"<?xml version='1.0'?><"])
