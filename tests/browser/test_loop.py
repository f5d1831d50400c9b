"""The loop in a real browser: staff make an export on the screen, look again at the likely label mistakes,
freeze it, train candidates, compare them, run a shadow pass, promote one and roll back.

Small and real: a tiny ONNX classifier whose head is a Gemm on penultimate features (so it can be refitted),
40 stored JPEGs with staff fixes, and Celery in eager mode, so the background jobs (build, freeze, training,
shadow pass) run inside the request that enqueues them.
"""

import numpy as np
import pytest
from PIL import Image

from catalog.models import ImageAsset
from classifier.models import ModelHead, ModelVersion, Promotion, ShadowPass, TrainingJob
from classifier.services.inference import active_models, classify_assets, forget_sessions
from classifier.services.registry import model_register
from config.celery_app import app
from reviews.models import DatasetExport, ManualFix
from tests.browser.conftest import log_in
from tests.classifier.onnx_builders import embedding_classifier, region_contract
from tests.factories import AdvertiserFactory, SitemapFactory, UserFactory
from tests.reviews.export_helpers import show, stored_asset

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "pw-for-tests"
# The true image type of each picture is its color: the tiny model (random weights) calls nearly all Dealer.
COLORS = {"Dealer": (200, 40, 30), "Stock": (240, 240, 240), "Placeholder": (30, 50, 210)}


@pytest.fixture(autouse=True)
def _eager_celery():
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    forget_sessions()
    yield
    app.conf.task_always_eager = before
    forget_sessions()


def photo(seed: int, rgb: tuple[int, int, int]) -> ImageAsset:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(rgb) + rng.normal(0, 18, size=(72, 96, 3)), 0, 255).astype(np.uint8)
    return stored_asset(seed, image=Image.fromarray(pixels))


def inventory() -> ModelVersion:
    """The active tiny model and two advertisers with 20 live photos each with a staff fix (two of them wrong:
    a placeholder graphic labelled Dealer), and 4 blue placeholders each that nobody fixed, which the model
    calls Dealer: a candidate that learnt the fixes flips them. Everything classified by the active model."""
    model = model_register(
        data=embedding_classifier(), contract=region_contract(size=16, name="tiny-embedding"), activate=True
    )
    staff = UserFactory(username="reviewer", is_staff=True)
    labels = list(COLORS)
    seed = 0
    placements, unfixed = [], []
    for slug in ("north", "south"):
        sitemap = SitemapFactory(advertiser=AdvertiserFactory(slug=slug, name=slug.title()))
        for i in range(20):
            truth = labels[i % 3]
            seed += 1
            fixed = "Dealer" if i == 2 else truth  # a placeholder mis-tagged Dealer: a likely label mistake
            placements.append((show(sitemap, photo(seed, COLORS[truth])), fixed))
        for _ in range(4):
            seed += 1
            unfixed.append(show(sitemap, photo(seed, COLORS["Placeholder"])))
    assets = [placement.asset for placement, _ in placements] + [placement.asset for placement in unfixed]
    classify_assets(assets, active_models())
    for placement, truth in placements:
        model_label = placement.asset.classifications.get(model_version=model, task="image_type").label
        ManualFix.objects.create(
            advertiser_id=placement.listing.sitemap.advertiser_id, asset_id=placement.asset_id, task="image_type",
            old_label=model_label, new_label=truth, source=ManualFix.Source.STAFF, user=staff,
        )  # fmt: skip
    return model


def test_staff_run_the_whole_loop_on_the_screens(browser_page, live_server):
    page = browser_page
    original = inventory()
    log_in(page, live_server, "reviewer", PASSWORD)

    # 1. The export: the form's live preview, then Create.
    page.click("header nav >> text=Exports")
    page.wait_for_selector("#export-preview [data-eligible='40']")
    page.fill("input[name=min_side]", "100")  # bigger than every photo: the preview says so at once
    page.locator("input[name=min_side]").dispatch_event("change")
    page.wait_for_selector("#export-preview [data-eligible='0']")
    assert "40 left out" in page.inner_text("#export-preview").replace("\n", " ")
    page.fill("input[name=min_side]", "64")
    page.locator("input[name=min_side]").dispatch_event("change")
    page.wait_for_selector("#export-preview [data-eligible='40']")
    page.click("#create-export")
    page.wait_for_selector("#export-status[data-status='review']")  # built in the request (eager Celery)
    export = DatasetExport.objects.get()
    assert page.url.endswith(f"/staff/exports/{export.pk}/")
    assert page.locator("#class-counts tr[data-label]").count() == 3

    # 2. A second look at the likely label mistakes: one key keeps, one key drops.
    flagged = export.items.filter(decision="pending").count()
    assert flagged >= 2  # at least the two mis-tagged placeholders
    assert page.locator("#issues .issue").count() == flagged
    page.locator("#issues .issue[data-decision='pending']").first.click()
    first = page.evaluate("document.activeElement.dataset.item")
    page.keyboard.press("d")  # drop it; the focus moves on to the next one to look at
    page.wait_for_selector(f"#issues .issue[data-item='{first}'][data-decision='drop']")
    second = page.evaluate("document.activeElement.dataset.item")
    assert second != first
    page.keyboard.press("k")  # the moves of every screen (static/js/keys.js): k back, j on
    assert page.evaluate("document.activeElement.dataset.item") == first
    page.keyboard.press("j")
    assert page.evaluate("document.activeElement.dataset.item") == second
    page.keyboard.press("a")  # keep: accept its label, as the queue's "a" accepts
    page.wait_for_selector(f"#issues .issue[data-item='{second}'][data-decision='keep']")
    assert page.inner_text("#pending-count") == str(flagged - 2)
    assert dict(export.items.filter(pk__in=[first, second]).values_list("pk", "decision")) == {
        int(first): "drop",
        int(second): "keep",
    }
    if flagged > 2:
        page.click("#freeze-button")  # refused while some are pending
        page.wait_for_selector(".messages li.error:has-text('still to look at')")
        page.click("#freeze-keeping")
    else:
        page.click("#freeze-button")
    page.wait_for_selector("#sha256")
    export.refresh_from_db()
    assert export.is_frozen
    assert page.inner_text("#sha256") == export.sha256
    assert page.locator("a.download").get_attribute("href").endswith(".zip")
    page.screenshot(path="/tmp/export.png", full_page=True)

    # 3. Train four candidates from it; the job's progress links to the comparison.
    page.click("#train-button")
    page.wait_for_selector("#training .job[data-status='succeeded']")
    job = TrainingJob.objects.get()
    assert job.status == "succeeded", job.error
    assert len(job.result["candidates"]) == 4
    export.refresh_from_db()
    assert export.used_for_training_at is not None

    # 4. Compare them with the active model on the same test split.
    page.click("a.compare")
    page.wait_for_selector("#comparison")
    assert page.locator("#summary th.model").count() == 5  # the baseline and four candidates
    assert page.locator("table.heatmap").count() == 5
    assert page.locator("#local-accuracy tr[data-advertiser]").count() == 2
    best = job.result["best"]
    card = page.locator(f".candidate[data-version='{best}']")
    assert "★ best" in card.inner_text()
    assert card.locator(".promote-anyway").count() == 1  # no shadow pass yet: promotion would not be instant

    # 5. The shadow pass of the best one: then the flips per advertiser and a plain Promote.
    card.locator(".shadow-button").click()
    card = page.locator(f".candidate[data-version='{best}']")
    card.locator(".job[data-status='succeeded']").wait_for()
    assert ShadowPass.objects.get(model_version_id=best).status == "succeeded"
    assert card.locator("table.flips tr[data-advertiser]").count() == 2
    flips = card.locator("table.flips tr[data-advertiser='north']").inner_text()
    assert "Dealer → Placeholder: 4" in flips  # the placeholders nobody fixed
    assert card.locator("table.flips tr[data-advertiser='north'] .samples img").count() == 4
    page.screenshot(path="/tmp/models.png", full_page=True)

    # 6. Promote it, then roll back: each asks first, naming the tasks and the flips per advertiser.
    candidate = ModelVersion.objects.get(pk=best)
    card.locator(".promote-button").click()
    page.wait_for_selector("#promotion-confirm[data-action='promote']")
    assert page.inner_text("#confirm-title") == f"Promote {candidate.name}?"
    assert page.inner_text("#confirm-tasks") == "image_type"
    change = page.locator(".task-change[data-task='image_type']")
    assert f"{original.name} → {candidate.name}" in change.locator("h2").inner_text()
    assert "Dealer → Placeholder: 4" in change.locator("table.flips tr[data-advertiser='north']").inner_text()
    assert change.locator("table.flips tr[data-advertiser]").count() == 2
    page.screenshot(path="/tmp/promote-confirm.png", full_page=True)
    assert not Promotion.objects.exists()  # nothing changed before the confirmation
    assert ModelHead.objects.get(task="image_type", is_active=True).model_version_id == original.pk
    page.click("#confirm-button")
    page.wait_for_selector(".messages li:has-text('is now the active model for image_type')")
    assert page.inner_text("#active-name") == candidate.name
    assert "by reviewer" in page.inner_text("#last-promotion")
    assert ModelHead.objects.get(task="image_type", is_active=True).model_version_id == best

    assert page.inner_text("#rollback-button") == f"Roll back to {original.name}…"
    page.click("#rollback-button")
    page.wait_for_selector("#promotion-confirm[data-action='rollback']")
    assert page.inner_text("#confirm-title") == f"Roll back to {original.name}?"
    back = page.locator(".task-change[data-task='image_type'] tr[data-advertiser='north']")
    assert "Placeholder → Dealer: 4" in back.inner_text()
    assert ModelHead.objects.get(task="image_type", is_active=True).model_version_id == best  # not yet
    page.click("#confirm-button")
    page.wait_for_selector(".messages li:has-text('Rolled back')")
    assert page.inner_text("#active-name") == original.name
    assert ModelHead.objects.get(task="image_type", is_active=True).model_version_id == original.pk
    assert page.locator("#rollback-button").is_disabled()  # the promotion is undone: nothing left to roll back to
    assert list(Promotion.objects.order_by("id").values_list("kind", "user__username")) == [
        ("promote", "reviewer"),
        ("rollback", "reviewer"),
    ]

    page.click("text=Accuracy over time")
    page.wait_for_selector("svg.line-chart .marker")
    page.screenshot(path="/tmp/accuracy.png", full_page=True)
    page.click("header nav >> text=Exports")
    page.wait_for_selector(f"#exports tr[data-export='{export.pk}']")
    page.screenshot(path="/tmp/exports.png", full_page=True)


def test_the_export_page_polls_while_building_and_reloads_when_done(browser_page, live_server):
    """Without a worker the build waits: the page polls its status every second and reloads once it ends."""
    page = browser_page
    UserFactory(username="reviewer", is_staff=True)
    export = DatasetExport.objects.create(task="image_type", params={"min_side": 64}, progress=0.3, stage="selecting")
    log_in(page, live_server, "reviewer", PASSWORD)
    page.goto(f"{live_server.url}/staff/exports/{export.pk}/")
    page.wait_for_selector("#export-status[data-status='building']")
    DatasetExport.objects.filter(pk=export.pk).update(progress=0.6, stage="writing items")
    page.wait_for_selector("#export-status:has-text('writing items')")
    assert page.locator("#export-status progress").get_attribute("value") == "0.600"
    DatasetExport.objects.filter(pk=export.pk).update(
        status=DatasetExport.Status.REVIEW, progress=1.0, stage="ready: 0 items"
    )
    page.wait_for_selector("#export-status[data-status='review']")  # the page reloaded (HX-Refresh)
    assert page.locator("#freeze-button").count() == 1
