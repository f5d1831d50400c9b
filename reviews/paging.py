"""Page arithmetic shared by the paged screens (the grid, the cluster review)."""

from __future__ import annotations


class PageNumbers:
    """Page arithmetic for a page of `per_page` rows, number `number`, out of `total`."""

    number: int
    total: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages
