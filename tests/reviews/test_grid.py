"""The grid selector's keyset pages: cursors forward and back, the last page, counts, malformed cursors."""

import base64

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import Sitemap
from catalog.services.runs import run_execute, run_start
from reviews.grid import GridFilters, Paging, sitemap_grid
from tests.factories import SitemapFactory

pytestmark = pytest.mark.django_db(transaction=True)


def ids(page):
    return [item.placement.pk for item in page.items]


def follow(sitemap, filters, page, link, per_page=2):
    """The page a link of `page` leads to (its query string parsed back, as the view does)."""
    from django.http import QueryDict

    query = QueryDict(getattr(page, f"{link}_query"))
    return sitemap_grid(
        sitemap=sitemap, filters=GridFilters.from_params(query), paging=Paging.from_params(query, filters=filters),
        per_page=per_page,
    )  # fmt: skip


@pytest.fixture
def sitemap(register_tiny):
    register_tiny()
    with InventoryServer(images=make_inventory_images(5, seed=51), images_per_listing=2) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run = run_start(sitemap=sitemap, enqueue=False)
        run_execute(run_id=run.pk, inline=True)
    return Sitemap.objects.get(pk=sitemap.pk)


@pytest.mark.parametrize("filters", [GridFilters(), GridFilters(task="color", source="model")])
def test_cursor_pages_walk_forward_and_back_and_the_last_page_holds_the_rest(sitemap, filters):
    first = sitemap_grid(sitemap=sitemap, filters=filters, per_page=2)
    assert (first.total, first.number, first.pages, len(first.items)) == (5, 1, 3, 2)
    assert (first.has_previous, first.has_next) == (False, True)

    second = follow(sitemap, filters, first, "next")
    third = follow(sitemap, filters, second, "next")
    assert (second.number, third.number, len(third.items), third.has_next) == (2, 3, 1, False)
    assert len(set(ids(first) + ids(second) + ids(third))) == 5

    last = follow(sitemap, filters, first, "last")
    assert (last.number, ids(last)) == (3, ids(third))
    back = follow(sitemap, filters, last, "previous")
    assert (back.number, ids(back), back.has_previous) == (2, ids(second), True)
    assert ids(follow(sitemap, filters, back, "previous")) == ids(first)
    assert ids(follow(sitemap, filters, last, "first")) == ids(first)


def test_every_page_costs_the_same_queries(sitemap):
    filters = GridFilters()
    first = sitemap_grid(sitemap=sitemap, filters=filters, per_page=2)
    counts = []
    for paging in (
        Paging(),
        Paging.from_params({"after": first.last_key}, filters=filters),
        Paging(last=True),
        Paging.from_params({"before": first.last_key}, filters=filters),
    ):
        with CaptureQueriesContext(connection) as queries:
            sitemap_grid(sitemap=sitemap, filters=filters, paging=paging, per_page=2)
        counts.append(len(queries.captured_queries))
    assert len(set(counts)) == 1, counts


def test_a_malformed_or_foreign_cursor_is_the_first_page_and_a_cursor_past_the_end_an_empty_one(sitemap):
    filters = GridFilters()
    first = sitemap_grid(sitemap=sitemap, filters=filters, per_page=2)
    by_confidence = GridFilters(sort="confidence")
    nested = base64.urlsafe_b64encode(b"[" * 100_000).decode()
    for cursor in ("", "!!not base64!!", "bm90IGpzb24", first.last_key[:-3], "WyJwb3NpdGlvbiIsImEiXQ", "é", nested):
        paging = Paging.from_params({"after": cursor}, filters=filters)
        assert ids(sitemap_grid(sitemap=sitemap, filters=filters, paging=paging, per_page=2)) == ids(first), cursor
    other_sort = Paging.from_params({"after": first.last_key}, filters=by_confidence)
    assert other_sort == Paging()  # a position cursor means nothing to the confidence sort

    last = sitemap_grid(sitemap=sitemap, filters=filters, paging=Paging(last=True), per_page=2)
    beyond = sitemap_grid(
        sitemap=sitemap, filters=filters, paging=Paging.from_params({"after": last.last_key}, filters=filters),
        per_page=2,
    )  # fmt: skip
    assert (beyond.total, beyond.items, beyond.has_previous, beyond.has_next) == (5, [], True, False)

    empty = sitemap_grid(sitemap=sitemap, filters=GridFilters(task="color", source="fix"), per_page=2)
    assert (empty.total, empty.number, empty.items, empty.has_next) == (0, 1, [], False)


def test_the_grid_page_answers_malformed_parameters_with_the_first_page(sitemap, client):
    from django.urls import reverse

    from tests.factories import UserFactory

    client.force_login(UserFactory(is_staff=True))
    url = reverse("reviews:staff-grid", args=[sitemap.pk])
    first = client.get(url)
    malformed = {
        "after": "@@not a cursor@@", "run": "9" * 30, "confidence_below": "nan", "tag": ["bogus", "color:Nope", ":"],
        "outcome": "exploded", "sort": "sideways", "page": "-1", "reviewed": "maybe",
    }  # fmt: skip
    response = client.get(url, malformed)
    assert response.status_code == 200
    page = response.context["page"]
    assert (page.number, ids(page)) == (1, ids(first.context["page"]))
    assert page.filters == GridFilters()
    for cursor in (
        "WyJwb3NpdGlvbiIsMWUzMDAsLTEsIm5hbiJd",
        "WyJwb3NpdGlvbiIsIDFlKzMwMCwgLTEsIDEwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwXQ",
    ):
        # ["position", 1e300, -1, "nan"] and ["position", 1e300, -1, 10**25]: no sort key (the first page)
        assert client.get(url, {"before": cursor, "run": "abc"}).status_code == 200
        assert client.get(url, {"after": cursor}).status_code == 200
