"""The Runs screens and the review queue in a real browser: a queue narrowed by a filter, a decision and its undo; a
health flag's link leading to exactly the images it is about; cancelling a Run from its page."""

import re

import pytest
from playwright.sync_api import expect

from catalog.models import Outcome, Run
from reviews.effective_store import effective_tags_refresh
from reviews.models import ChangeSet, ManualFix
from tests.browser.conftest import log_in
from tests.browser.grid_helpers import thumbnail
from tests.factories import (
    AdvertiserFactory,
    ImageAssetFactory,
    ListingFactory,
    PlacementFactory,
    RunFactory,
    SitemapFactory,
    UserFactory,
)
from tests.reviews.test_health import active_model, classify

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "pw-for-tests"


def hesitant_images(sitemap, version, n):
    placements = []
    for i in range(n):
        asset = ImageAssetFactory(width=320, height=240)
        thumbnail(asset, "red", i)
        placements.append(PlacementFactory(listing=ListingFactory(sitemap=sitemap), status="ok", asset=asset))
        classify(asset, version, "image_type", "Dealer", confidence=0.5, margin=0.01 * (i + 1))
    return placements


def test_the_queue_filtered_to_an_advertiser_a_decision_and_its_undo(browser_page, live_server):
    page = browser_page
    version = active_model("image_type")
    ours = SitemapFactory(advertiser=AdvertiserFactory(name="Autohaus Ost"))
    first, _ = hesitant_images(ours, version, 2)
    hesitant_images(SitemapFactory(advertiser=AdvertiserFactory(name="Other Motors")), version, 3)
    UserFactory(username="reviewer", is_staff=True)
    log_in(page, live_server, "reviewer", PASSWORD)

    page.goto(f"{live_server.url}/staff/queue/")
    expect(page.locator(".queue-item")).to_have_count(5)
    page.select_option("select[name=advertiser]", label="Autohaus Ost")
    page.click("form.queue-filters button[type=submit]")
    expect(page.locator(".queue-item")).to_have_count(2)
    expect(page.locator("#queue-progress .queue-remaining")).to_have_text("2")

    item = page.locator(f'.queue-item[data-placement="{first.pk}"]')
    item.focus()
    page.keyboard.press("2")  # Stock, the image type's second label
    expect(item.locator(".decision [data-change-set]")).to_contain_text("image_type: Stock")
    expect(page.locator("#queue-progress .queue-decided")).to_have_text("1")
    expect(page.locator("#queue-progress .queue-remaining")).to_have_text("1")
    decision = ManualFix.objects.get()
    assert (decision.asset_id, decision.new_label, decision.change_set.kind) == (first.asset_id, "Stock", "decision")

    page.keyboard.press("u")
    expect(item.locator(".decision [data-undone]")).to_have_text(
        "undone: image_type is asked again (no fix: Dealer again)"
    )
    expect(item).not_to_have_class(re.compile(r"\bdecided\b"))
    expect(page.locator("#queue-progress .queue-decided")).to_have_text("0")
    expect(page.locator("#queue-progress .queue-remaining")).to_have_text("2")
    back = ManualFix.objects.order_by("-id").first()  # withdrawn: the model's Dealer is the tag again
    assert (back.withdraws, back.reverts_id, back.change_set.undoes_id) == (True, decision.pk, decision.change_set_id)
    assert ChangeSet.objects.filter(kind="undo").count() == 1
    page.reload()
    expect(page.locator(".queue-item")).to_have_count(2)  # the question is back


def test_a_health_flag_leads_to_exactly_its_images_in_the_grid(browser_page, live_server):
    page = browser_page
    sitemap = SitemapFactory(name="Used cars")
    sitemap.live_images = 7
    sitemap.save()
    older = RunFactory(sitemap=sitemap, status=Run.Status.SUCCEEDED, urls=7, not_modified=7)
    run = RunFactory(
        sitemap=sitemap, status=Run.Status.PARTIAL, urls=7, failed=3, not_modified=4,
        failure_reasons={"http_404": 3},
        health_flags=[{"code": "failures_jump", "message": "43% of the images failed (3 of 7)"}],
    )  # fmt: skip
    listing = ListingFactory(sitemap=sitemap, external_id="VIN-1")
    failed = [
        PlacementFactory(listing=listing, position=n, status="failed", failure_reason="http_404", last_run=run,
                         outcome=Outcome.FAILED, url=f"https://cdn.example/gone/{n}.jpg")
        for n in range(3)
    ]  # fmt: skip
    for n in range(3, 6):
        asset = ImageAssetFactory(width=320, height=240)
        thumbnail(asset, "green", n)
        PlacementFactory(
            listing=listing, position=n, status="ok", asset=asset, last_run=run, outcome=Outcome.NOT_MODIFIED
        )
    # Failed too, but by an older Run (this one never reached it): not what the flag is about.
    PlacementFactory(listing=listing, position=6, status="failed", failure_reason="timeout", last_run=older,
                     outcome=Outcome.FAILED)  # fmt: skip
    effective_tags_refresh(sitemap_id=sitemap.pk)  # the grid reads the stored tags, as a Run's sync writes them
    UserFactory(username="reviewer", is_staff=True)
    log_in(page, live_server, "reviewer", PASSWORD)

    page.goto(f"{live_server.url}/staff/sitemaps/{sitemap.pk}/runs/")
    flag = page.locator(f'tr[data-run="{run.pk}"] .flag[data-code="failures_jump"]')
    expect(flag).to_contain_text("43% of the images failed")
    flag.locator("a.grid-link").click()
    page.wait_for_url(f"**/staff/sitemaps/{sitemap.pk}/?run={run.pk}&outcome=failed")

    cards = page.locator("#grid .card")
    expect(cards).to_have_count(3)
    shown = {int(card.get_attribute("data-id")) for card in cards.all()}
    assert shown == {p.pk for p in failed}


def test_cancelling_a_run_from_its_page(browser_page, live_server):
    page = browser_page
    run = RunFactory(status=Run.Status.QUEUED)
    UserFactory(username="reviewer", is_staff=True)
    log_in(page, live_server, "reviewer", PASSWORD)

    page.goto(f"{live_server.url}/staff/runs/{run.pk}/")
    expect(page.locator("#run-status")).to_have_text("Queued")
    page.click("#cancel-run")

    expect(page.locator("#run-status")).to_have_text("Failed")
    expect(page.locator("#run-error")).to_have_text("cancelled")
    expect(page.locator("#cancel-run")).to_have_count(0)
    run.refresh_from_db()
    assert (run.status, run.error) == ("failed", "cancelled")
