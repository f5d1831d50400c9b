"""Likely label mistakes on the real starter models: the active model's features, out-of-sample probabilities,
Cleanlab's rule; flipped labels are flagged for a second look, every item gets the model's opinion."""

import json
from pathlib import Path

import pytest

from classifier.models import Classification
from classifier.services.inference import active_models, classify_assets
from classifier.services.registry import model_register
from classifier.synth import vehicle_sample
from reviews.exports import export_create, export_decide, export_freeze, export_label_issues
from tests.factories import ListingFactory, SitemapFactory

from .export_helpers import label, show, stored_asset

pytestmark = pytest.mark.django_db

STARTERS = Path(__file__).resolve().parents[2] / "classifier" / "starter_models"
TYPES = ("Dealer", "Stock", "Placeholder")


def register_starter(name):
    contract = json.loads((STARTERS / f"{name}.json").read_text())
    return model_register(data=(STARTERS / f"{name}.onnx").read_bytes(), contract=contract, activate=True)


@pytest.fixture
def vehicle():
    register_starter("detector")
    return register_starter("vehicle")


def test_flipped_labels_are_flagged_and_every_item_has_the_models_opinion(vehicle):
    sitemap = SitemapFactory()
    placements = []
    for seed in range(45):
        truth = TYPES[seed % 3]
        sample = vehicle_sample(seed, image_type=truth, size=(320, 240))
        placements.append(
            (show(sitemap, stored_asset(seed, image=sample.image), listing=ListingFactory(sitemap=sitemap)), truth)
        )
    assets = [placement.asset for placement, _ in placements]
    active = active_models()
    for start in range(0, len(assets), 32):
        classify_assets(assets[start : start + 32], active)
    flipped = set()
    for index, (placement, truth) in enumerate(placements):
        given = truth
        if index in (0, 4, 8):  # a client's mis-tags: Dealer <-> Stock
            given = {"Dealer": "Stock", "Stock": "Dealer", "Placeholder": "Dealer"}[truth]
            flipped.add(placement.asset_id)
        label(placement, given)

    export = export_create(task="image_type", enqueue=False)

    items = list(export.items.all())
    assert all(item.model_label in TYPES and item.self_confidence is not None for item in items)
    crops = dict(
        Classification.objects.filter(model_version=vehicle, task="image_type").values_list("asset_id", "crop_box")
    )
    assert all(item.crop_box == crops[item.asset_id] for item in items)  # the crop the model saw
    pending = {item.asset_id for item in items if item.decision == "pending"}
    assert export.label_issues == len(pending) > 0
    assert len(pending & flipped) >= 2
    assert len(pending - flipped) <= 3
    listed = list(export_label_issues(export=export))
    assert [item.self_confidence for item in listed] == sorted(item.self_confidence for item in listed)

    # Staff look again: drop one, keep the rest; then it freezes.
    first, *others = listed
    export_decide(export=export, item_id=first.pk, decision="drop")
    for item in others:
        export_decide(export=export, item_id=item.pk, decision="keep")
    frozen = export_freeze(export=export)
    assert frozen.excluded == {"dropped": 1}


def test_too_few_items_skip_label_issues_and_say_so(vehicle):
    sitemap = SitemapFactory()
    for seed in range(5):
        label(show(sitemap, stored_asset(seed)), TYPES[seed % 2])
    export = export_create(task="image_type", enqueue=False)
    assert export.label_issues == 0
    assert "likely label mistakes not looked for: 5 items" in export.stage
