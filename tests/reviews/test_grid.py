"""The grid selector's counts and pages: the stored count after a sync, one pass for tag filters."""

import pytest

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import Sitemap
from catalog.services.runs import run_execute, run_start
from reviews.grid import GridFilters, sitemap_grid
from tests.factories import SitemapFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_grid_uses_the_count_the_sync_stored_and_pages_past_the_end_show_the_last(register_tiny):
    register_tiny()
    with InventoryServer(images=make_inventory_images(5, seed=51), images_per_listing=2) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run = run_start(sitemap=sitemap, enqueue=False)
        run_execute(run_id=run.pk, inline=True)
    sitemap = Sitemap.objects.get(pk=sitemap.pk)
    assert sitemap.live_images == 5

    page = sitemap_grid(sitemap=sitemap, filters=GridFilters(), page=3, per_page=2)
    assert (page.total, page.number, len(page.items)) == (5, 3, 1)

    labelled = GridFilters(task="color", source="model")  # computed in SQL: one pass for page and count
    page = sitemap_grid(sitemap=sitemap, filters=labelled, page=99, per_page=2)
    assert (page.total, page.number, len(page.items)) == (5, 3, 1)
    empty = sitemap_grid(sitemap=sitemap, filters=GridFilters(task="color", source="fix"), page=4, per_page=2)
    assert (empty.total, empty.number, empty.items) == (0, 1, [])
