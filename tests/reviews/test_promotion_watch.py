"""The watch after a promotion (reviews.services.watch): human labels given since the promotion judge the new model
and the one it replaced on the same images; a clearly worse model is flagged `promotion_regressed` once, staff are
emailed, and the Models screen shows the evidence beside the rollback."""

from datetime import timedelta

import numpy as np
import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from catalog.inventory_server import InventoryServer, make_inventory_images
from catalog.models import Placement, Task
from classifier.models import Classification, Promotion
from classifier.services.promotion import model_promote, model_rollback
from reviews.models import ManualFix
from reviews.services.watch import FLAG, Verdicts, promotion_watch, promotions_watch
from tests.factories import SitemapFactory, UserFactory
from tests.reviews.test_effective_store import run_sync

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def promoted(register_tiny):
    """20 pictures classified by the tiny model, then a model that answers otherwise (the smallest channel) promoted
    and run: both models' results are cached for every picture."""
    before = register_tiny()
    with InventoryServer(images=list(make_inventory_images(20, seed=3)), images_per_listing=4) as server:
        sitemap = SitemapFactory(url=server.sitemap_url)
        run_sync(sitemap)
        after = register_tiny(name="tiny inverted", activate=False, color_gain=-1.0)
        promotion = model_promote(version=after, force=True)
        run_sync(sitemap)
        yield {"before": before, "after": after, "promotion": promotion, "sitemap": sitemap}


def label_like(version, placements, count):
    """Human color labels (staff fixes) of `count` placements: the label `version` gives."""
    labels = dict(Classification.objects.filter(model_version=version, task="color").values_list("asset_id", "label"))
    for placement in placements[:count]:
        ManualFix.objects.create(
            advertiser=placement.listing.sitemap.advertiser, asset=placement.asset, task="color",
            old_label="", new_label=labels[placement.asset_id], source="staff",
        )  # fmt: skip


def differing(promoted):
    """The placements on which the two models disagree."""
    answers = {
        version.pk: dict(
            Classification.objects.filter(model_version=version, task="color").values_list("asset_id", "label")
        )
        for version in (promoted["before"], promoted["after"])
    }
    placements = Placement.objects.filter(listing__sitemap=promoted["sitemap"]).select_related("listing__sitemap")
    return [
        p for p in placements if answers[promoted["before"].pk][p.asset_id] != answers[promoted["after"].pk][p.asset_id]
    ]


def color_watches():
    """The watches of the color promotion (the tiny model's two heads were promoted together: color, sensitive)."""
    return [watch for watch in promotions_watch() if watch.promotion.task == "color"]


def test_a_clearly_worse_model_is_flagged_once_emailed_and_shown_beside_the_rollback(promoted, client):
    staff = UserFactory(is_staff=True, email="ops@imagetagger.example")
    disagree = differing(promoted)
    assert len(disagree) >= 12
    label_like(promoted["before"], disagree, 12)  # humans side with the predecessor, 12 times out of 12

    [watch] = color_watches()
    assert watch.overall.reviewed == 12
    assert (watch.overall.new_wrong, watch.overall.old_wrong, watch.overall.worse, watch.overall.better) == (
        12,
        0,
        12,
        0,
    )
    assert watch.overall.p_value == pytest.approx(0.5**12)
    assert watch.regressed == ["all", promoted["sitemap"].advertiser.slug]
    promotion = Promotion.objects.get(pk=promoted["promotion"].pk)
    assert promotion.regressed_at is not None
    [flag] = promotion.watch["flags"]
    assert flag["code"] == FLAG
    assert "tiny inverted does clearly worse on color than tiny" in flag["message"]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@imagetagger.example"]
    assert FLAG in mail.outbox[0].subject

    promotions_watch()  # checked again: the figures are refreshed, the flag and the email are not repeated
    assert len(Promotion.objects.get(pk=promotion.pk).watch["flags"]) == 1
    assert len(mail.outbox) == 1

    client.force_login(staff)
    page = client.get(reverse("reviews:staff-models", args=[Task.COLOR])).content.decode()
    assert 'id="promotion-regressed"' in page
    assert "Roll back to tiny" in page  # the rollback, offered with that evidence
    assert "100%" in page  # it was overturned on every label

    model_rollback(task=Task.COLOR)
    assert promotions_watch() == []  # rolled back: no longer watched


def test_a_model_humans_agree_with_is_not_flagged_and_a_few_disagreements_prove_nothing(promoted):
    disagree = differing(promoted)
    label_like(promoted["after"], disagree, 12)
    [watch] = color_watches()
    assert (watch.overall.worse, watch.overall.better) == (0, 12)
    assert watch.regressed == []
    assert not Promotion.objects.get(pk=promoted["promotion"].pk).watch["flags"]

    few = Verdicts()
    for _ in range(5):
        few.add(new_right=False, old_right=True)
    assert few.worse == 5
    assert not few.clearly_worse  # under PROMOTION_WATCH_MIN_DISAGREEMENTS


def test_the_watch_ends_after_its_window_and_labels_before_the_promotion_do_not_count(promoted, settings):
    disagree = differing(promoted)
    label_like(promoted["before"], disagree, 12)
    Promotion.objects.filter(pk=promoted["promotion"].pk).update(created_at=timezone.now())  # labelled before it
    assert promotion_watch(promotion=Promotion.objects.get(pk=promoted["promotion"].pk)).overall.reviewed == 0

    later = timezone.now() + timedelta(seconds=settings.PROMOTION_WATCH_SECONDS + 60)
    assert promotions_watch(now=later) == []


def test_watch_promotions_prints_the_comparison(promoted, capsys):
    label_like(promoted["before"], differing(promoted), 12)
    call_command("watch_promotions")
    out = capsys.readouterr().out
    assert "color: tiny inverted (was tiny)" in out
    assert "all advertisers" in out
    assert "clearly worse" in out
    assert f"{FLAG}: tiny inverted does clearly worse" in out


def test_the_watch_compares_per_vehicle_kind_too(promoted, register_detector):
    from classifier.models import Detection

    detector = register_detector(np.zeros((1, 5, 1), dtype=np.float32))
    disagree = differing(promoted)
    for placement in disagree:
        Detection.objects.create(asset=placement.asset, model_version=detector, box=[0, 0, 8, 8], kind="motorcycle")
    label_like(promoted["before"], disagree, 12)

    [watch] = color_watches()
    assert watch.kinds["motorcycle"].worse == 12
    assert "motorcycle vehicles" in watch.regressed
    promotion = Promotion.objects.get(pk=promoted["promotion"].pk)
    assert promotion.watch["kinds"]["motorcycle"]["clearly_worse"] is True
