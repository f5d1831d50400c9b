import gzip

import pytest

from catalog.inventory import InventoryRefused, Kind, walk_sitemaps

from .helpers import url_entry, urlset


def index(*children: str) -> bytes:
    sitemaps = "".join(f"<sitemap><loc>{child}</loc></sitemap>" for child in children)
    return f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{sitemaps}</sitemapindex>'.encode()


class Site:
    """An in-memory web site: open_url serves its documents and remembers what was asked."""

    def __init__(self, documents: dict[str, bytes]) -> None:
        self.documents = documents
        self.opened: list[str] = []

    def open_url(self, url: str):
        self.opened.append(url)
        if url not in self.documents:
            raise LookupError(f"404 Not Found for {url}")
        data = self.documents[url]
        return (data[start : start + 100] for start in range(0, len(data), 100))


def test_walk_follows_children_depth_first_in_document_order():
    site = Site(
        {
            "https://s.example/robots.txt": b"User-agent: *\nSitemap: https://s.example/index.xml\n",
            "https://s.example/index.xml": index("https://s.example/a.xml", "https://s.example/nested.xml"),
            "https://s.example/a.xml": urlset(url_entry("https://s.example/p/a", "https://c.example/a.jpg")),
            "https://s.example/nested.xml": index("https://s.example/b.xml.gz"),
            "https://s.example/b.xml.gz": gzip.compress(urlset(url_entry("https://s.example/p/b"))),
        }
    )

    walked = list(walk_sitemaps("https://s.example/robots.txt", site.open_url))

    assert site.opened == [
        "https://s.example/robots.txt",
        "https://s.example/index.xml",
        "https://s.example/a.xml",
        "https://s.example/nested.xml",
        "https://s.example/b.xml.gz",
    ]
    # Children come before their parent, so a parent's errors are complete when it is yielded.
    assert [url for url, _ in walked] == [
        "https://s.example/a.xml",
        "https://s.example/b.xml.gz",
        "https://s.example/nested.xml",
        "https://s.example/index.xml",
        "https://s.example/robots.txt",
    ]
    inventories = dict(walked)
    assert inventories["https://s.example/robots.txt"].kind is Kind.ROBOTS
    assert inventories["https://s.example/a.xml"].pages[0].images == ["https://c.example/a.jpg"]
    assert inventories["https://s.example/b.xml.gz"].pages[0].loc == "https://s.example/p/b"
    assert all(not inventory.errors for inventory in inventories.values())


def test_walk_detects_cycles():
    site = Site(
        {
            "https://s.example/index.xml": index("https://s.example/child.xml", "https://s.example/index.xml"),
            "https://s.example/child.xml": index("https://s.example/index.xml", "https://s.example/leaf.xml"),
            "https://s.example/leaf.xml": urlset(url_entry("https://s.example/p/1")),
        }
    )

    inventories = dict(walk_sitemaps("https://s.example/index.xml", site.open_url))

    assert site.opened == [
        "https://s.example/index.xml",
        "https://s.example/child.xml",
        "https://s.example/leaf.xml",
    ]
    # Nothing was lost (every document was read once): a warning, not an error that would block gone-marking.
    assert inventories["https://s.example/child.xml"].warnings == [
        "child https://s.example/index.xml: already read (cycle or repeat), skipped"
    ]
    assert inventories["https://s.example/index.xml"].warnings == [
        "child https://s.example/index.xml: already read (cycle or repeat), skipped"
    ]
    assert all(not inventory.errors for inventory in inventories.values())


def test_walk_depth_limit_recorded_not_raised():
    documents = {f"https://s.example/{n}.xml": index(f"https://s.example/{n + 1}.xml") for n in range(10)}
    site = Site(documents)

    walked = list(walk_sitemaps("https://s.example/0.xml", site.open_url, max_depth=2))

    assert [url for url, _ in walked] == [
        "https://s.example/2.xml",
        "https://s.example/1.xml",
        "https://s.example/0.xml",
    ]
    assert walked[0][1].errors == ["depth limit 2 reached: 1 child sitemaps not read"]


def test_walk_missing_and_broken_children_recorded_on_the_parent():
    site = Site(
        {
            "https://s.example/index.xml": index(
                "https://s.example/missing.xml", "https://s.example/evil.xml", "https://s.example/ok.xml"
            ),
            "https://s.example/evil.xml": b'<!DOCTYPE urlset [<!ENTITY x "y">]><urlset/>',
            "https://s.example/ok.xml": urlset(url_entry("https://s.example/p/1")),
        }
    )

    walked = list(walk_sitemaps("https://s.example/index.xml", site.open_url))

    assert [url for url, _ in walked] == ["https://s.example/ok.xml", "https://s.example/index.xml"]
    errors = walked[-1][1].errors
    assert errors[0] == "child https://s.example/missing.xml: 404 Not Found for https://s.example/missing.xml"
    assert errors[1].startswith("child https://s.example/evil.xml: refused: DOCTYPE urlset has an internal subset")
    assert len(errors) == 2


def test_walk_sitemap_limit_and_read_kwargs():
    children = [f"https://s.example/{n}.xml" for n in range(5)]
    documents = {
        child: urlset(url_entry("https://s.example/p", "https://c/1.jpg", "https://c/2.jpg")) for child in children
    }
    site = Site({"https://s.example/index.xml": index(*children), **documents})

    walked = list(walk_sitemaps("https://s.example/index.xml", site.open_url, max_sitemaps=3, max_images_per_page=1))

    assert len(walked) == 3
    assert walked[-1][1].errors == ["sitemap limit 3 reached: 3 child sitemaps not read"]
    assert walked[0][1].pages[0].images == ["https://c/1.jpg"]


def test_walk_root_failure_propagates():
    site = Site({"https://s.example/bad.xml": b"<unknown/>"})

    with pytest.raises(LookupError):
        list(walk_sitemaps("https://s.example/missing.xml", site.open_url))
    with pytest.raises(InventoryRefused):
        list(walk_sitemaps("https://s.example/bad.xml", site.open_url))
