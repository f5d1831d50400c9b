"""Reviewing on the compact grid in a real browser: tag and save without losing the place, undo the save with one key,
a bulk retag through its confirmation and its undo from Recent changes, pages by key, every key in one overlay."""

import re

import pytest
from playwright.sync_api import expect

from reviews.models import ChangeSet, ManualFix
from tests.browser.conftest import log_in
from tests.browser.grid_helpers import settled, sitemap_of
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "pw-for-tests"

WHERE = "card => ({id: card.dataset.id, top: card.getBoundingClientRect().top, scrollY: window.scrollY})"


def focused_id(page):
    return page.evaluate("document.activeElement.dataset.id")


@pytest.fixture
def reviewer(browser_page, live_server):
    UserFactory(username="reviewer", is_staff=True)
    log_in(browser_page, live_server, "reviewer", PASSWORD)
    browser_page.set_viewport_size({"width": 1440, "height": 900})
    return browser_page


def test_tag_save_keep_the_place_and_undo_the_save_with_u(reviewer, live_server, register_tiny):
    page = reviewer
    sitemap, placements = sitemap_of(register_tiny(), 64)  # red, green, blue, red, ...: 8 rows of 8
    page.goto(f"{live_server.url}/staff/sitemaps/{sitemap.pk}/?task=color")
    expect(page.locator("#grid.compact .card")).to_have_count(64)
    expect(page.locator("#grid .card").first).to_be_focused()

    for _ in range(5):
        page.keyboard.press("ArrowDown")  # five rows down: the 41st image, below the first screen
    card = page.locator("#grid .card:focus")
    assert card.get_attribute("data-id") == str(placements[40].pk)
    before = card.evaluate(WHERE)
    assert before["scrollY"] > 100  # the window scrolled to reach it

    page.keyboard.press("2")  # Blue on the 41st (green)
    page.keyboard.press("j")
    page.keyboard.press("=")  # Yellow on the 42nd (blue)
    page.keyboard.press("j")
    page.keyboard.press("r")  # the 43rd (red) reviewed without change
    page.keyboard.press("k")  # back to the 42nd: the card being worked on
    assert page.inner_text("#pending-count") == "3 pending"
    working = page.locator("#grid .card:focus").evaluate(WHERE)
    page.keyboard.press("s")
    expect(page.locator("#grid .messages")).to_contain_text("2 tags changed, 1 marked reviewed")
    settled(page)

    after = page.locator("#grid .card:focus").evaluate(WHERE)
    assert after["id"] == working["id"] == str(placements[41].pk)  # the same card keeps the focus
    assert abs(after["top"] - working["top"]) <= 4  # at the same height in the window: the page did not jump
    assert after["scrollY"] > 100
    assert page.locator(f"#grid .card[data-id='{placements[41].pk}'] .tag.current .label").inner_text() == "Yellow"
    change_set = ChangeSet.objects.get()
    assert (change_set.kind, change_set.fixes, change_set.user.username) == ("save", 3, "reviewer")
    assert sorted(change_set.fix_rows.values_list("new_label", flat=True)) == ["Blue", "Red", "Yellow"]

    page.keyboard.press("u")  # undo that save: no fix was in effect before it, so each is withdrawn
    expect(page.locator("#grid .messages")).to_contain_text(
        f"Change set {change_set.pk} undone: 3 tags set back (3 with no fix any more"
    )
    settled(page)
    undo = ChangeSet.objects.get(kind="undo")
    assert undo.undoes == change_set
    assert list(undo.fix_rows.values_list("withdraws", flat=True)) == [True, True, True]
    for placement, label in ((placements[40], "green"), (placements[41], "blue"), (placements[42], "red")):
        card = page.locator(f"#grid .card[data-id='{placement.pk}']")
        expect(card.locator(".tag.current .label")).to_have_text(label)  # the model's tag again, not reviewed
        expect(card.locator(".tag.current .source")).to_contain_text("model")
        expect(card).not_to_have_class(re.compile(r"\breviewed\b"))
    assert focused_id(page) == str(placements[41].pk)
    page.keyboard.press("u")  # nothing left to undo on this page
    expect(page.locator("#notice")).to_contain_text("Nothing to undo")
    assert ChangeSet.objects.filter(kind="undo").count() == 1


def test_bulk_of_the_whole_filter_asks_first_then_recent_changes_undo_it(reviewer, live_server, register_tiny):
    page = reviewer
    sitemap, placements = sitemap_of(register_tiny(), 45)  # 15 of each color
    page.goto(f"{live_server.url}/staff/sitemaps/{sitemap.pk}/?task=color&label=Red")
    expect(page.locator("#grid .card")).to_have_count(15)

    page.check("#select-all-filter")
    page.select_option("#bulk-label", "White")
    page.click("#bulk-apply")
    confirmation = page.locator("#bulk-confirm")
    expect(confirmation).to_contain_text("Set color to White on 15 images?")
    expect(confirmation.locator(".bulk-sample img")).to_have_count(12)
    expect(page.locator("#bulk-confirm-button")).to_be_focused()
    settled(page)
    assert not ManualFix.objects.exists()  # nothing written before the confirmation

    page.click("#bulk-confirm-button")
    expect(page.locator("#grid .messages")).to_contain_text("15 tags changed")
    settled(page)
    reds = [p for i, p in enumerate(placements) if i % 3 == 0]
    assert set(ManualFix.objects.values_list("asset_id", "new_label")) == {(p.asset_id, "White") for p in reds}
    bulk = ChangeSet.objects.get()
    assert (bulk.kind, bulk.fixes) == ("bulk", 15)

    page.click("text=Recent changes")
    row = page.locator(f"#change-sets tr[data-change-set='{bulk.pk}']")
    expect(row).to_contain_text("Bulk retag")
    expect(row).to_contain_text("15")
    row.locator("button.undo").click()
    expect(page.locator(".messages")).to_contain_text(f"Change set {bulk.pk} undone: 15 tags set back")
    expect(row).to_contain_text("undone by")
    expect(row.locator("button.undo")).to_have_count(0)  # undone once
    latest = {}
    for fix in ManualFix.objects.order_by("created_at", "id"):
        latest[fix.asset_id] = fix.label_in_effect
    assert latest == {p.asset_id: None for p in reds}  # withdrawn: the model's red again


def test_page_keys_follow_the_pager_and_the_overlay_lists_every_key(reviewer, live_server, register_tiny):
    page = reviewer
    sitemap, placements = sitemap_of(register_tiny(), 130, pictures=0)  # more than a page of 100
    page.goto(f"{live_server.url}/staff/sitemaps/{sitemap.pk}/?task=color")
    first_page = page.locator("#grid .card").first
    expect(first_page).to_have_attribute("data-id", str(placements[0].pk))

    page.keyboard.press("1")  # a pending change holds the page: it would be lost
    page.keyboard.press("]")
    expect(page.locator("#notice")).to_contain_text("pending")
    expect(page.locator("#grid .card").first).to_have_attribute("data-id", str(placements[0].pk))
    page.keyboard.press("x")

    page.keyboard.press("]")
    expect(page.locator("#grid .card").first).to_have_attribute("data-id", str(placements[100].pk))
    expect(page.locator("#grid .card")).to_have_count(30)
    settled(page)
    expect(page.locator("#grid .card").first).to_be_focused()
    page.keyboard.press("[")
    expect(page.locator("#grid .card").first).to_have_attribute("data-id", str(placements[0].pk))
    settled(page)
    page.keyboard.press("n")
    expect(page.locator("#grid .card").first).to_have_attribute("data-id", str(placements[100].pk))
    settled(page)
    page.keyboard.press("p")
    expect(page.locator("#grid .card").first).to_have_attribute("data-id", str(placements[0].pk))
    settled(page)

    page.keyboard.press("a")  # select the page, then none
    expect(page.locator("#grid .card.selected")).to_have_count(100)
    page.keyboard.press("Escape")
    expect(page.locator("#grid .card.selected")).to_have_count(0)

    page.keyboard.press("?")
    overlay = page.locator("#keys-overlay")
    expect(overlay).to_be_visible()
    for key in ("]", "[", "u", "r", "s", "?", "Esc"):
        expect(overlay.locator("kbd", has_text=re.compile(f"^{re.escape(key)}$")).first).to_be_visible()
    page.keyboard.press("Escape")
    expect(overlay).to_be_hidden()


def test_reviewed_without_change_progress_and_filters_on_reviewed_and_other_tasks(reviewer, live_server, register_tiny):
    page = reviewer
    sitemap, placements = sitemap_of(register_tiny(), 12)  # red, green, blue, red, ...
    page.goto(f"{live_server.url}/staff/sitemaps/{sitemap.pk}/?task=color")
    expect(page.locator("#reviewed-progress")).to_contain_text("0 of 12 reviewed")

    page.keyboard.press("r")  # the first (red) is right as it is
    expect(page.locator("#grid .card.pending-confirm")).to_have_count(1)
    page.keyboard.press("j")
    page.keyboard.press("2")  # the second (green) is Blue
    page.click("#update")
    expect(page.locator("#grid .messages")).to_contain_text("1 tag changed, 1 marked reviewed")
    expect(page.locator("#reviewed-progress")).to_contain_text("2 of 12 reviewed")
    settled(page)
    confirmation = ManualFix.objects.get(asset=placements[0].asset)
    assert (confirmation.old_label, confirmation.new_label, confirmation.is_confirmation) == ("Red", "Red", True)

    page.select_option("#reviewed-filter", "no")
    expect(page.locator("#grid .card")).to_have_count(10)
    settled(page)
    assert "reviewed=no" in page.url
    page.select_option("#reviewed-filter", "")
    expect(page.locator("#grid .card")).to_have_count(12)
    settled(page)

    # "and color is not Blue", chosen while the grid shows the image type (no image has one: all unknown).
    page.select_option("select[name=task]", "image_type")
    expect(page.locator("#fixes[data-task=image_type]")).to_have_count(1)
    settled(page)
    asked = []
    page.on("request", lambda request: "/staff/sitemaps/" in request.url and asked.append(request.url))
    page.select_option("#tag-add select[data-part=task]", "color")
    page.select_option("#tag-add select[data-part=op]", "!")
    page.select_option("#tag-add select[data-part=label]", "Blue")
    expect(page.locator("#grid .card")).to_have_count(7)  # 4 blue from the model and the one fixed to Blue
    settled(page)
    assert len(asked) == 1  # the task and "is not" alone were no whole condition: nothing was sent for them
    assert "tag=color%3A!Blue" in asked[0]
    assert "tag=color%3A!Blue" in page.url
    expect(page.locator(".tag-row")).to_contain_text("and color is not Blue")
    page.select_option("#tag-add select[data-part=task]", "image_type")
    page.select_option("#tag-add select[data-part=label]", "none")  # and no image type (all of them)
    expect(page.locator(".tag-row")).to_have_count(2)
    settled(page)
    expect(page.locator("#grid .card")).to_have_count(7)
    page.locator(".tag-row", has_text="color").locator(".tag-remove").click()
    expect(page.locator("#grid .card")).to_have_count(12)
    expect(page.locator(".tag-row")).to_have_count(1)
