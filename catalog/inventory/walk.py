"""walk_sitemaps: follow a sitemap index (or robots.txt) through its children, without any I/O of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .reader import read_inventory
from .types import Inventory

OpenUrl = Callable[[str], Iterable[bytes]]


def walk_sitemaps(
    root_url: str,
    open_url: OpenUrl,
    *,
    max_depth: int = 3,
    max_sitemaps: int = 1000,
    **read_kwargs: Any,
) -> Iterator[tuple[str, Inventory]]:
    """Read ``root_url`` and its child sitemaps depth-first in document order; yield (url, inventory).

    ``open_url(url)`` returns the document's bytes (e.g. a streaming HTTP body; closed after reading if
    it has ``close()``). Children are yielded before their parent, so the parent's ``errors`` are complete
    when it is yielded: a child read before (cycle or repeat), more than ``max_depth`` levels below the
    root, beyond ``max_sitemaps`` documents in all, or failing to open or read ("child <url>: <reason>")
    is recorded on the parent and skipped. ``read_kwargs`` go to read_inventory. Problems with the root
    itself (open_url raising, InventoryRefused) propagate.
    """
    walk = _Walk(open_url=open_url, max_depth=max_depth, max_sitemaps=max_sitemaps, read_kwargs=read_kwargs)
    walk.seen.add(root_url.strip())
    walk.read_count = 1
    root = walk.read(root_url)
    yield from walk.children(root_url, root, depth=0)


@dataclass
class _Walk:
    open_url: OpenUrl
    max_depth: int
    max_sitemaps: int
    read_kwargs: dict[str, Any]
    seen: set[str] = field(default_factory=set)
    read_count: int = 0

    def read(self, url: str) -> Inventory:
        chunks = self.open_url(url)
        try:
            return read_inventory(chunks, url=url, **self.read_kwargs)
        finally:
            close = getattr(chunks, "close", None)
            if callable(close):
                close()

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
            if key in self.seen:
                inventory.errors.append(f"child {child_url}: already read (cycle or repeat), skipped")
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
