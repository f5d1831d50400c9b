"""Pure-Python readers of advertiser inventories: sitemaps, indexes, text sitemaps, robots.txt, RSS/Atom,
scrape feeds and product pages. No Django here, so it can be used and tested from anywhere.
"""

from .feed import FEED_FORMAT, FEED_FORMAT_DOC, feed_json_load, parse_feed
from .reader import read_inventory
from .types import FeedInvalid, Inventory, InventoryRefused, Kind, NotAnInventory, Page
from .walk import walk_sitemaps

__all__ = [
    "FEED_FORMAT",
    "FEED_FORMAT_DOC",
    "FeedInvalid",
    "Inventory",
    "InventoryRefused",
    "Kind",
    "NotAnInventory",
    "Page",
    "feed_json_load",
    "parse_feed",
    "read_inventory",
    "walk_sitemaps",
]
