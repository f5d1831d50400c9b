"""walk_sitemaps: follow a sitemap index (or robots.txt) through its children, without any I/O of its own.

Also the discovery of a site's sitemaps from its homepage: robots.txt's, and those at the well-known paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from .reader import read_inventory
from .types import Inventory, Kind, NotAnInventory

OpenUrl = Callable[[str], Iterable[bytes]]
Expect = Literal["sitemap", "page", "any"]

# robots.txt -> index -> index -> index -> urlset is four levels below the root; leave room for one more.
DEFAULT_MAX_DEPTH = 5
# Where sites keep sitemaps that robots.txt does not list: ultimate-sitemap-parser's list, and the paths of the
# common CMSs (WordPress core, Drupal's xmlsitemap). Probed in this order on every discovery, each at most once.
WELL_KNOWN_SITEMAPS = (
    "/sitemap.xml",
    "/sitemap_index.xml",
    "/sitemap-index.xml",
    "/sitemaps.xml",
    "/sitemap.xml.gz",
    "/sitemap_index.xml.gz",
    "/sitemap-index.xml.gz",
    "/wp-sitemap.xml",
    "/.sitemap.xml",
    "/sitemap",
    "/sitemap/sitemap-index.xml",
    "/admin/config/search/xmlsitemap",
    "/sitemap_news.xml",
    "/sitemap-news.xml",
    "/sitemap_news.xml.gz",
    "/sitemap-news.xml.gz",
)
_SITEMAP_KINDS = frozenset({Kind.URLSET, Kind.SITEMAP_INDEX, Kind.TEXT, Kind.RSS, Kind.ATOM, Kind.FEED})
_DOCUMENT_SUFFIXES = (".xml", ".gz", ".txt", ".json", ".rss", ".atom")


def is_site_root(url: str) -> bool:
    """True for a homepage URL: no path beyond "/" and no query (``https://dealer.example/``)."""
    parts = urlsplit(url.strip())
    return parts.path in ("", "/") and not parts.query


def looks_like_document(url: str) -> bool:
    """True when the URL names a document (a file suffix, "sitemap" or "feed" in the path, a query), not a page."""
    parts = urlsplit(url.strip())
    path = parts.path.lower()
    return bool(parts.query) or path.endswith(_DOCUMENT_SUFFIXES) or "sitemap" in path or "feed" in path


def walk_sitemaps(
    root_url: str,
    open_url: OpenUrl,
    *,
    expect: Expect = "any",
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_sitemaps: int = 1000,
    **read_kwargs: Any,
) -> Iterator[tuple[str, Inventory]]:
    """Read ``root_url`` and its child sitemaps depth-first in document order; yield (url, inventory).

    ``open_url(url)`` returns the document's bytes (e.g. a streaming HTTP body; closed after reading if
    it has ``close()``; its ``final_url`` attribute, if any, says where redirects led). Children are yielded
    before their parent, so the parent's ``errors`` are complete when it is yielded: a child more than
    ``max_depth`` levels below the root, beyond ``max_sitemaps`` documents in all, or failing to open or
    read ("child <url>: <reason>", an HTML page included) is an error recorded on the parent; a child read
    before (cycle or repeat) is a warning, since nothing was lost. ``read_kwargs`` go to read_inventory.

    ``expect`` is what the root may be: "page" and "any" read an HTML root as a product page; "sitemap"
    never does. For "sitemap", a homepage is discovered (see ``_Walk.discover``): when the root URL is a site
    root, or when it answers HTML without a redirect, does not look like a document and discovery finds
    sitemaps. Otherwise HTML is NotAnInventory. Problems with the root itself (open_url raising,
    InventoryRefused) propagate.
    """
    walk = _Walk(open_url=open_url, max_depth=max_depth, max_sitemaps=max_sitemaps, read_kwargs=read_kwargs)
    walk.seen.add(root_url.strip())
    walk.read_count = 1
    if expect == "sitemap" and is_site_root(root_url):
        root = walk.discover(root_url)
    else:
        try:
            root = walk.read(root_url, allow_html=expect != "sitemap")
        except NotAnInventory as refused:
            if refused.final_url or looks_like_document(root_url):
                raise
            root = walk.discover(root_url, refused=refused)
    yield from walk.children(root_url, root, depth=0)


@dataclass
class _Walk:
    open_url: OpenUrl
    max_depth: int
    max_sitemaps: int
    read_kwargs: dict[str, Any]
    seen: set[str] = field(default_factory=set)
    read_count: int = 0
    preread: dict[str, Inventory] = field(default_factory=dict)
    # The sitemaps discovery found (robots.txt's and the well-known paths'): one that is also another's child is
    # read once, without a warning, since nobody listed it twice.
    discovered: set[str] = field(default_factory=set)
    last_final_url: str | None = None  # where the last read's redirects led

    def read(self, url: str, *, allow_html: bool = False) -> Inventory:
        chunks = self.open_url(url)
        self.last_final_url = None
        try:
            return read_inventory(chunks, url=url, allow_html=allow_html, **self.read_kwargs)
        except NotAnInventory as exc:
            final_url = getattr(chunks, "final_url", None)
            if final_url and final_url != url and not exc.final_url:
                raise NotAnInventory(final_url=final_url) from None
            raise
        finally:
            self.last_final_url = getattr(chunks, "final_url", None)
            close = getattr(chunks, "close", None)
            if callable(close):
                close()

    def discover(self, url: str, *, refused: NotAnInventory | None = None) -> Inventory:
        """The sitemaps of the site at ``url``: robots.txt's, and those found at the well-known paths.

        Every well-known path robots.txt does not list is probed, as ultimate-sitemap-parser does: sites often
        list one sitemap and keep another one at /sitemap.xml or /wp-sitemap.xml. A path that leads (through
        redirects) to a sitemap found already is not listed twice. A robots.txt or well-known path that is
        missing (4xx) or answers HTML (a soft 404) is not an error. One that fails otherwise (5xx, timeout) is an
        error when robots.txt listed nothing, since it may hide the site's only sitemaps, and a warning beside the
        sitemaps robots.txt lists, which are the site's own word. Finding none at all raises NotAnInventory, or,
        for a site root, reads the URL itself as a sitemap.
        """
        parts = urlsplit(url.strip())
        origin = f"{parts.scheme}://{parts.netloc}"
        site = Inventory(kind=Kind.SITE, pages=[], sitemaps=[], errors=[], warnings=[])
        robots_url = f"{origin}/robots.txt"
        robots = self._probe(robots_url, site.errors)
        if robots is not None and robots.kind is Kind.ROBOTS:
            site.sitemaps = list(robots.sitemaps)
            site.errors.extend(f"{robots_url}: {error}" for error in robots.errors)
            site.warnings.extend(f"{robots_url}: {warning}" for warning in robots.warnings)
        listed = {sitemap.strip() for sitemap in site.sitemaps}
        probe_failures = site.warnings if listed else site.errors
        found_at: set[str] = set(listed)
        for path in WELL_KNOWN_SITEMAPS:
            candidate = f"{origin}{path}"
            if candidate in self.seen or candidate in listed:
                continue
            found = self._probe(candidate, probe_failures)
            final_url = self.last_final_url or candidate
            if found is None or found.kind not in _SITEMAP_KINDS or final_url.strip() in found_at:
                continue
            found_at.add(final_url.strip())
            self.preread[candidate] = found
            site.sitemaps.append(candidate)
        self.discovered.update(sitemap.strip() for sitemap in site.sitemaps)
        if site.sitemaps:
            return site
        detail = "no sitemap found in robots.txt or at " + ", ".join(WELL_KNOWN_SITEMAPS)
        if site.errors:
            detail += "; " + "; ".join(site.errors)
        if refused is not None:
            raise NotAnInventory(detail=detail)
        try:
            return self.read(url, allow_html=False)
        except NotAnInventory as exc:
            raise NotAnInventory(final_url=exc.final_url, detail=detail) from None

    def _probe(self, url: str, failures: list[str]) -> Inventory | None:
        self.seen.add(url.strip())
        self.read_count += 1
        try:
            return self.read(url, allow_html=False)
        except NotAnInventory:
            return None
        except Exception as exc:
            status = getattr(exc, "status", None)
            if not (isinstance(status, int) and 400 <= status < 500):
                failures.append(f"{url}: {str(exc) or type(exc).__name__}")
            return None

    def children(self, url: str, inventory: Inventory, *, depth: int) -> Iterator[tuple[str, Inventory]]:
        if inventory.sitemaps and depth >= self.max_depth:
            inventory.errors.append(
                f"depth limit {self.max_depth} reached: {len(inventory.sitemaps)} child sitemaps not read"
            )
            yield url, inventory
            return
        over_limit = 0
        for child_url in inventory.sitemaps:
            key = child_url.strip()
            preread = self.preread.pop(key, None)
            if preread is not None:
                yield from self.children(child_url, preread, depth=depth + 1)
                continue
            if key in self.seen and key in self.discovered:
                continue
            if key in self.seen:
                inventory.warnings.append(f"child {child_url}: already read (cycle or repeat), skipped")
                continue
            if self.read_count >= self.max_sitemaps:
                over_limit += 1
                continue
            self.seen.add(key)
            self.read_count += 1
            try:
                child = self.read(child_url)
            except Exception as exc:  # a missing or broken child never stops the walk
                inventory.errors.append(f"child {child_url}: {str(exc) or type(exc).__name__}")
                continue
            yield from self.children(child_url, child, depth=depth + 1)
        if over_limit:
            inventory.errors.append(f"sitemap limit {self.max_sitemaps} reached: {over_limit} child sitemaps not read")
        yield url, inventory
