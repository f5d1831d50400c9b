"""Every tag of a grid card is readable whole at 1440x900: the task, the label and where it came from (with the
model's confidence), in compact cards, with every task shown (t) and in full cards, for the longest label of each
task. Nothing is cut with an ellipsis or clipped by the card."""

import pytest
from playwright.sync_api import expect

from classifier.models import Classification
from reviews.effective_store import effective_tags_refresh
from reviews.models import ManualFix
from tests.browser.conftest import log_in
from tests.browser.grid_helpers import thumbnail
from tests.factories import ImageAssetFactory, ListingFactory, PlacementFactory, SitemapFactory, UserFactory
from tests.reviews.test_health import active_model

pytestmark = pytest.mark.django_db(transaction=True)

# The longest label of each task, and the others a card may show beside them.
CARDS = [
    {"image_type": "Placeholder", "intent": "Tools, Vehicles, Electronics & Appliances", "sensitive": "not sensitive"},
    {"image_type": "Dealer", "color": "Burgundy", "intent": "No Shopping Intent", "sensitive": "not sensitive"},
    {"image_type": "Stock", "color": "Yellow", "intent": "Fashion & Style", "sensitive": "sensitive"},
]

# Every tag element shown on a card that is cut: wider content than its box (an ellipsis or a clip), or a box that
# reaches past the card's edge (the compact card hides what overflows it).
CUT = """cards => cards.flatMap(card => {
  const edge = card.getBoundingClientRect();
  return Array.from(card.querySelectorAll('.tag .task, .tag .label, .tag .source')).filter(part => {
    if (!part.getClientRects().length) return false;  // not shown in this mode
    const box = part.getBoundingClientRect();
    return part.scrollWidth > part.clientWidth + 1 || box.right > edge.right + 0.5 || box.left < edge.left - 0.5;
  }).map(part => `${card.dataset.id} ${part.closest('.tag').dataset.task} .${part.className}: "${part.innerText}"`);
})"""


def inventory():
    """Cards with the longest labels: model tags (one low confidence, 0.27, one high), and a fix by a reviewer with
    a long name and a carried fix, whose sources are the longest."""
    version = active_model("image_type", "color", "intent", "sensitive")
    sitemap = SitemapFactory()
    placements = []
    for i in range(12):
        labels = CARDS[i % len(CARDS)]
        asset = ImageAssetFactory(width=320, height=240)
        thumbnail(asset, ("red", "green", "blue")[i % 3], i)
        placements.append(PlacementFactory(listing=ListingFactory(sitemap=sitemap), status="ok", asset=asset))
        for task, label in labels.items():
            confidence = 0.27 if i % 2 else 0.92
            Classification.objects.create(
                asset=asset, model_version=version, task=task, label=label, confidence=confidence,
                margin=confidence / 2, scores={label: confidence},
            )  # fmt: skip
    advertiser_id = sitemap.advertiser_id
    long_name = UserFactory(username="maximiliane.vandenberghe")
    ManualFix.objects.create(
        advertiser_id=advertiser_id, asset_id=placements[1].asset_id, task="intent", old_label="No Shopping Intent",
        new_label="Tools, Vehicles, Electronics & Appliances", source="staff", user=long_name,
    )  # fmt: skip
    origin = ManualFix.objects.create(
        advertiser_id=advertiser_id, asset_id=placements[3].asset_id, task="color", old_label="Burgundy",
        new_label="Burgundy", source="staff", user=long_name,
    )  # fmt: skip
    ManualFix.objects.create(
        advertiser_id=advertiser_id, asset_id=placements[2].asset_id, task="color", new_label="Burgundy",
        source="carried", origin=origin, note="carried",
    )  # fmt: skip
    effective_tags_refresh(sitemap_id=sitemap.pk)
    return sitemap


@pytest.mark.parametrize("task", ["image_type", "color", "intent", "sensitive"])
def test_no_tag_is_cut_at_1440_in_compact_t_and_full_cards(browser_page, live_server, task):
    page = browser_page
    sitemap = inventory()
    UserFactory(username="reviewer", is_staff=True)
    log_in(page, live_server, "reviewer", "pw-for-tests")
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/staff/sitemaps/{sitemap.pk}/?task={task}&density=compact")
    cards = page.locator("#grid .card")
    expect(cards).to_have_count(12)
    page.mouse.move(0, 0)  # no card under the pointer

    assert cards.evaluate_all(CUT) == [], "compact"
    page.keyboard.press("t")  # every task on every card
    expect(page.locator("#grid.show-tags")).to_have_count(1)
    assert cards.evaluate_all(CUT) == [], "compact with every task (t)"
    cards.nth(1).hover()  # a hovered card shows every task over its picture
    assert cards.evaluate_all(CUT) == [], "hovered"
    page.mouse.move(0, 0)
    page.keyboard.press("t")
    page.keyboard.press("d")  # full cards
    expect(page.locator("#grid.full")).to_have_count(1)
    assert cards.evaluate_all(CUT) == [], "full"
    # The short task names stand for the full ones, which every tag's task names in its title.
    assert cards.first.locator(".tag[data-task=image_type] .task").get_attribute("title") == "image_type"
