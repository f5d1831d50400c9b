"""The compact grid at a laptop's size: how many cards a reviewer sees whole without scrolling."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.browser.grid_helpers import sitemap_of
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "pw-for-tests"

# Cards whose whole box (getBoundingClientRect) lies inside the window.
FULLY_VISIBLE = """cards => cards.filter(card => {
  const box = card.getBoundingClientRect();
  return box.width > 0 && box.top >= 0 && box.left >= 0
    && box.bottom <= window.innerHeight && box.right <= window.innerWidth;
}).length"""


def test_the_compact_grid_shows_24_cards_or_more_whole_at_1440x900(browser_page, live_server, register_tiny, tmp_path):
    page = browser_page
    sitemap, _ = sitemap_of(register_tiny(), 60)
    UserFactory(username="reviewer", is_staff=True)
    log_in(page, live_server, "reviewer", PASSWORD)
    page.set_viewport_size({"width": 1440, "height": 900})

    page.goto(f"{live_server.url}/staff/sitemaps/{sitemap.pk}/?task=color")
    expect(page.locator("#grid.compact .card")).to_have_count(60)
    expect(page.locator("#grid .card").first).to_be_focused()
    page.mouse.move(0, 0)  # no card under the pointer: a hovered card shows every task
    path = tmp_path / "grid-compact-1440x900.png"
    page.wait_for_load_state("networkidle")  # the lazy thumbnails in view
    page.screenshot(path=str(path))

    visible = page.locator("#grid .card").evaluate_all(FULLY_VISIBLE)
    print(f"compact: {visible} cards fully visible at 1440x900; screenshot {path}")  # noqa: T201
    assert visible >= 24
    assert path.stat().st_size > 0
    # The chosen task's tag is the one shown; a low confidence (0.27) is marked, a high one (0.92) is not.
    first, second = page.locator("#grid .card").nth(0), page.locator("#grid .card").nth(1)
    expect(first.locator(".tag.current")).to_be_visible()
    expect(first.locator(".tag[data-task=sensitive]")).to_be_hidden()
    assert "low-confidence" in second.get_attribute("class")
    assert "low-confidence" not in first.get_attribute("class")
    assert "0.27" in second.locator(".tag.current").inner_text()

    # Full cards show every task and fit fewer; the choice is remembered across pages.
    page.keyboard.press("d")
    expect(page.locator("#grid.full")).to_have_count(1)
    expect(first.locator(".tag[data-task=sensitive]")).to_be_visible()
    full = page.locator("#grid .card").evaluate_all(FULLY_VISIBLE)
    assert full < visible
    page.reload()
    expect(page.locator("#grid.full")).to_have_count(1)
    page.keyboard.press("d")
    expect(page.locator("#grid.compact")).to_have_count(1)
