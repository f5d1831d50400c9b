"""A local HTTP server serving a generated advertiser inventory (image sitemap + JPEGs), and its images.

Pure Python, no Django: the integration tests, the benchmark command and the demo all start one.
"""

from catalog.inventory_server.images import (
    BOMB_SIZE,
    INVENTORY_SIZES,
    decompression_bomb_png,
    make_inventory_images,
    make_jpeg,
)
from catalog.inventory_server.server import InventoryServer

__all__ = [
    "BOMB_SIZE",
    "INVENTORY_SIZES",
    "InventoryServer",
    "decompression_bomb_png",
    "make_inventory_images",
    "make_jpeg",
]
