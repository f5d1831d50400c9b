"""Documents as the peers (ultimate-sitemap-parser, advertools, Scrapy) read them (issue 10, sections 2-4).

Every fixture is built here. One bad character never ends the read; any encoding Python knows is read;
robots.txt and text sitemaps are read as site owners write them.
"""

from __future__ import annotations

import codecs

import pytest

from catalog.inventory import InventoryRefused, Kind, read_inventory, walk_sitemaps

from .helpers import IMAGE_NS, SITEMAP_NS, chunked, url_entry, urlset
from .test_walk import Site, index


def read(data: bytes, *, url: str | None = "https://dealer.example/sitemap.xml", size: int = 7):
    return read_inventory(chunked(data, size), url=url)


def locs(inventory) -> list[str]:
    return [page.loc for page in inventory.pages]


# -- section 2: one bad character -----------------------------------------------------------------


def test_a_raw_ampersand_in_loc_is_kept_literally_and_the_read_goes_on():
    data = urlset(
        url_entry("https://dealer.example/search?make=Ford&model=F-150", "https://cdn.example/1.jpg"),
        url_entry("https://dealer.example/cars/2", "https://cdn.example/2.jpg"),
    )

    inventory = read(data)

    assert locs(inventory) == ["https://dealer.example/search?make=Ford&model=F-150", "https://dealer.example/cars/2"]
    assert inventory.errors == []
    assert len(inventory.warnings) == 1
    assert "raw '&'" in inventory.warnings[0]
    assert inventory.warnings[0].startswith("line 3:")


def test_raw_ampersands_in_image_loc_and_caption_are_repaired():
    entry = (
        "<url><loc>https://dealer.example/cars/1</loc><image:image>"
        "<image:loc>https://cdn.example/img?id=1&size=large</image:loc>"
        "<image:caption>Ford & Sons, Black&White</image:caption></image:image></url>"
    )
    data = urlset(entry, url_entry("https://dealer.example/cars/2"))

    inventory = read(data, size=5)

    assert [page.images for page in inventory.pages] == [["https://cdn.example/img?id=1&size=large"], []]
    assert inventory.errors == []
    assert len(inventory.warnings) == 3


def test_cdata_is_not_touched_by_the_repair():
    data = urlset(
        "<url><loc><![CDATA[https://dealer.example/s?a=1&b=2&amp;c]]></loc></url>", url_entry("https://x.example/2")
    )

    inventory = read(data, size=3)

    assert locs(inventory) == ["https://dealer.example/s?a=1&b=2&amp;c", "https://x.example/2"]
    assert (inventory.errors, inventory.warnings) == ([], [])


@pytest.mark.parametrize(("entity", "char"), [("&nbsp;", "\u00a0"), ("&eacute;", "é"), ("&copy;", "©")])
def test_html_entities_are_read_as_their_characters(entity, char):
    data = urlset(
        url_entry(f"https://dealer.example/caf{entity}1"),
        url_entry("https://dealer.example/cars/2"),
    )

    inventory = read(data)

    assert locs(inventory) == [f"https://dealer.example/caf{char}1", "https://dealer.example/cars/2"]
    assert inventory.errors == []
    assert len(inventory.warnings) == 1
    assert entity in inventory.warnings[0]


def test_a_stray_latin1_byte_in_a_utf8_document_is_read_as_latin1():
    data = urlset(url_entry("https://dealer.example/cars/1"), url_entry("https://dealer.example/caf\u00e9"))
    data = data.replace("é".encode(), b"\xe9")  # one byte of Latin-1 in a document that says UTF-8

    inventory = read(data)

    assert locs(inventory) == ["https://dealer.example/cars/1", "https://dealer.example/caf\u00e9"]
    assert inventory.errors == []
    assert len(inventory.warnings) == 1
    assert "0xE9" in inventory.warnings[0]


def test_control_characters_are_dropped_with_a_warning():
    data = urlset(url_entry("https://dealer.example/cars/\x0b1"), url_entry("https://dealer.example/cars/2"))

    inventory = read(data)

    assert locs(inventory) == ["https://dealer.example/cars/1", "https://dealer.example/cars/2"]
    assert len(inventory.warnings) == 1


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE urlset PUBLIC "-//Sitemaps//DTD Sitemap 0.9//EN" "http://www.sitemaps.org/sitemap.dtd">',
        '<!DOCTYPE urlset SYSTEM "http://www.sitemaps.org/sitemap.dtd">',
    ],
)
def test_a_doctype_naming_a_public_dtd_is_accepted_and_never_loaded(doctype):
    data = urlset(url_entry("https://dealer.example/cars/1&nbsp;x"), head=f'<?xml version="1.0"?>\n{doctype}\n')

    inventory = read(data)

    assert locs(inventory) == ["https://dealer.example/cars/1\u00a0x"]


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<urlset><url><loc>&x;</loc></url></urlset>",
        b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b"<urlset><url><loc>&lol2;</loc></url></urlset>",
        b"<!DOCTYPE urlset [ ]><urlset/>",
    ],
)
def test_entity_declarations_and_internal_subsets_are_still_refused(data):
    with pytest.raises(InventoryRefused, match="internal subset"):
        read(data)


def test_the_size_cap_still_holds_after_repairs():
    data = urlset(*(url_entry(f"https://dealer.example/cars/{n}?a=1&b=2") for n in range(2000)))
    with pytest.raises(InventoryRefused, match="exceeds"):
        read_inventory(chunked(data, 4096), url=None, max_inflated_bytes=len(data) // 2)


# -- section 3: encodings -------------------------------------------------------------------------


def declared(encoding: str, data_encoding: str | None = None, *, bom: bytes = b"") -> bytes:
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        f'<urlset xmlns="{SITEMAP_NS}" xmlns:image="{IMAGE_NS}">'
        "<url><loc>https://dealer.example/車/1</loc></url>"
        "<url><loc>https://dealer.example/cars/2</loc></url></urlset>"
    )
    return bom + text.encode(data_encoding or encoding)


@pytest.mark.parametrize(
    "data",
    [
        declared("Shift_JIS"),
        declared("EUC-JP"),
        declared("GB18030"),
        declared("Big5"),
        declared("utf8mb4", "utf-8"),
        declared("utf8", "utf-8"),
        declared("UTF-16", "utf-16"),  # Python writes a BOM
        declared("UTF-16", "utf-16-be", bom=codecs.BOM_UTF16_BE),
        declared("UTF-8", "utf-16-le", bom=codecs.BOM_UTF16_LE),  # the BOM wins over the declaration
        declared("UTF-8", "utf-8", bom=codecs.BOM_UTF8),
    ],
)
def test_any_encoding_python_knows_is_read(data):
    inventory = read(data, size=3)

    assert locs(inventory) == ["https://dealer.example/車/1", "https://dealer.example/cars/2"]
    assert inventory.errors == []


def test_an_unknown_encoding_name_of_a_utf8_document_is_read_as_utf8_with_a_warning():
    inventory = read(declared("x-unknown-enc", "utf-8"))

    assert locs(inventory) == ["https://dealer.example/車/1", "https://dealer.example/cars/2"]
    assert any("x-unknown-enc" in warning for warning in inventory.warnings)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (declared("x-unknown-enc", "shift_jis"), "unknown encoding 'x-unknown-enc'"),
        (declared("base64", "utf-8"), "'base64' is not a text encoding"),
    ],
)
def test_what_cannot_be_decoded_is_refused_in_one_line(data, message):
    with pytest.raises(InventoryRefused, match=message) as caught:
        read(data)
    assert "\n" not in str(caught.value)


def test_a_utf16_robots_txt_and_text_sitemap_are_read():
    robots = "User-agent: *\nSitemap: https://dealer.example/sitemap.xml\n".encode("utf-16")
    text = "https://dealer.example/cars/1\nhttps://dealer.example/cars/2\n".encode("utf-16")

    assert read(robots, url="https://dealer.example/robots.txt").sitemaps == ["https://dealer.example/sitemap.xml"]
    assert locs(read(text, url=None)) == ["https://dealer.example/cars/1", "https://dealer.example/cars/2"]


# -- section 4: robots.txt, text sitemaps, nesting ---------------------------------------------------


def test_robots_txt_site_map_spelling_is_accepted():
    robots = b"User-agent: *\nSite-map: https://dealer.example/a.xml\nsitemap:https://dealer.example/b.xml\n"

    inventory = read(robots, url="https://dealer.example/robots.txt")

    assert inventory.sitemaps == ["https://dealer.example/a.xml", "https://dealer.example/b.xml"]


def test_a_robots_sitemap_line_that_is_not_utf8_is_skipped_and_reported():
    robots = b"User-agent: *\nSitemap: https://dealer.example/caf\xe9.xml\nSitemap: https://dealer.example/b.xml\n"

    inventory = read(robots, url="https://dealer.example/robots.txt")

    assert inventory.sitemaps == ["https://dealer.example/b.xml"]
    assert len(inventory.errors) == 1
    assert "not valid UTF-8" in inventory.errors[0]
    assert "skipped" in inventory.errors[0]


def test_a_text_sitemap_with_more_comments_than_urls_keeps_the_url_lines():
    text = "\n".join(
        [*(f"# generated by the dealer CMS, line {n}" for n in range(10)), "https://dealer.example/cars/1", ""]
    ).encode()

    inventory = read(text, url=None)

    assert (inventory.kind, locs(inventory), inventory.errors) == (Kind.TEXT, ["https://dealer.example/cars/1"], [])


def test_a_text_sitemap_with_more_junk_than_urls_keeps_the_url_lines_and_says_so():
    text = b"Inventory of Dealer X\nupdated daily\nnot a url\nhttps://dealer.example/cars/1\nhttps://dealer.example/cars/2\n"

    inventory = read(text, url=None)

    assert locs(inventory) == ["https://dealer.example/cars/1", "https://dealer.example/cars/2"]
    # Junk outnumbering URLs may be an error page that happens to contain a link: kept, but recorded as an
    # error, so nothing is marked gone on the strength of it.
    assert len(inventory.errors) == 1
    assert "3 lines skipped" in inventory.errors[0]


def test_a_text_sitemap_with_a_little_junk_warns():
    text = b"https://dealer.example/cars/1\nhttps://dealer.example/cars/2\n-- end --\n"

    inventory = read(text, url=None)

    assert locs(inventory) == ["https://dealer.example/cars/1", "https://dealer.example/cars/2"]
    assert inventory.errors == []
    assert inventory.warnings == ["1 lines skipped: not http(s) URLs (first: '-- end --')"]


def test_robots_index_index_index_urlset_is_read_and_cycles_still_stop():
    base = "https://dealer.example"
    site = Site(
        {
            f"{base}/robots.txt": f"Sitemap: {base}/i1.xml\n".encode(),
            f"{base}/i1.xml": index(f"{base}/i2.xml"),
            f"{base}/i2.xml": index(f"{base}/i3.xml"),
            f"{base}/i3.xml": index(f"{base}/cars.xml", f"{base}/i1.xml"),
            f"{base}/cars.xml": urlset(url_entry(f"{base}/cars/1", "https://cdn.example/1.jpg")),
        }
    )

    walked = dict(walk_sitemaps(f"{base}/robots.txt", site.open_url))

    assert locs(walked[f"{base}/cars.xml"]) == [f"{base}/cars/1"]
    assert all(not inventory.errors for inventory in walked.values())
    assert walked[f"{base}/i3.xml"].warnings == [f"child {base}/i1.xml: already read (cycle or repeat), skipped"]
