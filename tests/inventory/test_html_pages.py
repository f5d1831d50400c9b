import pytest

from catalog.inventory import Kind, read_inventory
from catalog.inventory.html_pages import MAX_HTML_BYTES, largest_candidate

from .helpers import chunked

PAGE = b"""<!DOCTYPE html>
<html><head>
<meta charset="utf-8">
<base href="https://cdn.dealer.example/assets/">
<meta property="og:image" content="https://dealer.example/og.jpg">
<meta property="og:image:secure_url" content="https://dealer.example/og-secure.jpg">
<title>2021 Ford F-150</title>
</head><body>
<img src="logo.png" alt="logo">
<img src="small.jpg" srcset="small.jpg 400w, /big.jpg 1600w, medium.jpg 800w">
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="lazy.jpg">
<img src="placeholder.gif" data-lazy-src="//img.example/lazy2.jpg">
<img data-srcset="lazy-1x.jpg 1x, lazy-2x.jpg 2x">
<img srcset="a.jpg, b.jpg">
<picture>
  <source type="image/webp" srcset="pic-480.webp 480w, pic-960.webp 960w">
  <source media="(max-width: 600px)"
    srcset="https://img.example/f_auto,w_300/pic.jpg 300w,https://img.example/f_auto,w_900/pic.jpg 900w">
  <img src="pic.jpg">
</picture>
<source srcset="not-in-picture.jpg">
<img src="javascript:alert(1)">
<img src="logo.png">
<img src="">
</body></html>"""


def test_product_page_images():
    inventory = read_inventory(chunked(PAGE, 100), url="https://dealer.example/cars/1")

    assert inventory.kind is Kind.PAGE
    assert len(inventory.pages) == 1
    page = inventory.pages[0]
    assert page.loc == "https://dealer.example/cars/1"
    assert page.images == [
        "https://dealer.example/og.jpg",
        "https://dealer.example/og-secure.jpg",
        "https://cdn.dealer.example/assets/logo.png",
        "https://cdn.dealer.example/big.jpg",
        "https://cdn.dealer.example/assets/lazy.jpg",
        "https://img.example/lazy2.jpg",
        "https://cdn.dealer.example/assets/lazy-2x.jpg",
        "https://cdn.dealer.example/assets/b.jpg",
        "https://cdn.dealer.example/assets/pic-960.webp",
        "https://img.example/f_auto,w_900/pic.jpg",
        "https://cdn.dealer.example/assets/pic.jpg",
    ]
    assert inventory.errors == ["image unsupported scheme 'javascript' (only http and https): 'javascript:alert(1)'"]


def test_page_without_base_resolves_against_url_and_tolerates_broken_html():
    data = b"<html><body><div><img src='/a.jpg'><p>unclosed <img SRC=\"b.jpg\"><img src=c.jpg"

    inventory = read_inventory([data], url="https://dealer.example/cars/1")

    assert inventory.pages[0].images == ["https://dealer.example/a.jpg", "https://dealer.example/cars/b.jpg"]


def test_page_in_latin1_declared_by_meta():
    data = '<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"></head>'
    data += '<body><img src="/caf\u00e9.jpg"></body></html>'

    inventory = read_inventory([data.encode("latin-1")], url="https://d.example/")

    assert inventory.pages[0].images == ["https://d.example/caf\u00e9.jpg"]


def test_page_truncated_at_the_size_cap():
    data = b"<html><body>" + b'<img src="/a.jpg">' + b" " * MAX_HTML_BYTES + b'<img src="/b.jpg"></body></html>'

    inventory = read_inventory(chunked(data, 64 * 1024), url="https://d.example/")

    assert inventory.pages[0].images == ["https://d.example/a.jpg"]
    assert inventory.errors == [f"HTML page truncated: only the first {MAX_HTML_BYTES} bytes were read"]


def test_xhtml_with_xml_declaration_is_a_page():
    data = b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body><img src="/a.jpg"/></body></html>'

    inventory = read_inventory([data], url="https://d.example/p")

    assert inventory.kind is Kind.PAGE
    assert inventory.pages[0].images == ["https://d.example/a.jpg"]


@pytest.mark.parametrize(
    ("srcset", "expected"),
    [
        ("a.jpg 100w, b.jpg 300w, c.jpg 200w", "b.jpg"),
        ("a.jpg 1x, b.jpg 3x, c.jpg 2x", "b.jpg"),
        ("a.jpg 2x, b.jpg 100w", "b.jpg"),
        ("a.jpg, b.jpg", "b.jpg"),
        ("x,y.jpg 10w, z,w.jpg 20w", "z,w.jpg"),
        ("a.jpg 100w,b.jpg 200w", "b.jpg"),
        ("", None),
    ],
)
def test_largest_srcset_candidate(srcset, expected):
    assert largest_candidate(srcset) == expected
