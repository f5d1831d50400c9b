"""The effective-tag rule is written once (reviews.effective.RULE): its Python answer and its SQL answer agree on
every combination of inputs, and the placeholder rule holds everywhere a tag is read."""

import itertools

import pytest

from catalog.models import Placement
from classifier.models import Classification, ModelHead
from reviews.effective import RULE, ColumnNames, Inputs, Source, annotate_effective, decide
from reviews.expressions import active_heads
from reviews.models import ManualFix
from reviews.selectors import effective_tags
from tests.classifier.onnx_builders import classifier_contract, mean_classifier
from tests.factories import ImageAssetFactory, ListingFactory, PlacementFactory, SitemapFactory

pytestmark = pytest.mark.django_db

# What each input may be. A fix is (kind, label): a revert (a fix back to an older label), a fix carried from a
# re-encoded copy, a withdrawal (an undo back to no fix: the fix before it is not in effect), or a fix after a
# withdrawal; the model is (status, label).
TYPE_FIXES = [None, ("carried", "Placeholder"), ("revert", "Dealer"), ("withdrawn", "")]
TYPE_MODELS = [None, ("ok", "Placeholder"), ("ok", "Stock"), ("failed", "")]
COLOR_FIXES = [None, ("withdrawn then fixed", "Red"), ("carried", "Blue"), ("withdrawn", "")]
SCRAPE_COLORS = [None, " Gray ", "no such color"]
COLOR_MODELS = [None, ("ok", "Green"), ("failed", "")]
PLACEMENT_STATUSES = [Placement.Status.OK, Placement.Status.FAILED]


def two_head_model():
    from classifier.services.registry import model_register

    contract = classifier_contract(name="two heads")
    contract["heads"] = [
        {"output": "color", "task": "color", "activation": "softmax", "labels": ["Red", "Green", "Blue"]},
        {"output": "sensitive", "task": "image_type", "activation": "none", "labels": ["Dealer", "Placeholder"]},
    ]
    return model_register(data=mean_classifier(), contract=contract, activate=True)


def add_fix(advertiser, asset, task, fix):
    if fix is None:
        return
    kind, label = fix
    first = ManualFix.objects.create(
        advertiser=advertiser, asset=asset, task=task, new_label="Stock" if task == "image_type" else "Black",
        source=ManualFix.Source.STAFF,
    )  # fmt: skip
    if kind.startswith("withdrawn"):
        ManualFix.objects.create(
            advertiser=advertiser, asset=asset, task=task, old_label=first.new_label, new_label="", withdraws=True,
            source="staff", reverts=first,
        )  # fmt: skip
        if label:
            ManualFix.objects.create(
                advertiser=advertiser, asset=asset, task=task, new_label=label, source="advertiser"
            )
    elif kind == "revert":
        ManualFix.objects.create(
            advertiser=advertiser, asset=asset, task=task, new_label=label, source="staff", reverts=first
        )
    else:
        ManualFix.objects.create(
            advertiser=advertiser, asset=asset, task=task, new_label=label, source="carried", origin=first
        )


def add_result(asset, version, task, model):
    if model is None:
        return
    status, label = model
    Classification.objects.create(
        asset=asset, model_version=version, task=task, status=status, label=label,
        confidence=0.8 if status == "ok" else None, error="boom" if status == "failed" else "",
    )  # fmt: skip


@pytest.fixture
def every_combination():
    version = two_head_model()
    sitemap = SitemapFactory()
    advertiser = sitemap.advertiser
    combos = list(
        itertools.product(TYPE_FIXES, TYPE_MODELS, COLOR_FIXES, SCRAPE_COLORS, COLOR_MODELS, PLACEMENT_STATUSES)
    )
    listings = {color: ListingFactory(sitemap=sitemap, attributes={"color": color} if color else {}) for color in
                SCRAPE_COLORS}  # fmt: skip
    for type_fix, type_model, color_fix, scrape, color_model, status in combos:
        asset = ImageAssetFactory()
        PlacementFactory(listing=listings[scrape], asset=asset, status=status)
        add_fix(advertiser, asset, "image_type", type_fix)
        add_result(asset, version, "image_type", type_model)
        add_fix(advertiser, asset, "color", color_fix)
        add_result(asset, version, "color", color_model)
    return sitemap, len(combos)


def answers_in_sql(sitemap):
    queryset = annotate_effective(Placement.objects.filter(listing__sitemap=sitemap), ["color"], active_heads())
    columns = [ColumnNames(task) for task in ("image_type", "color")]
    names = [name for column in columns for name in (column.label, column.source)]
    return {
        row["id"]: {column.task: (row[column.label], row[column.source]) for column in columns}
        for row in queryset.values("id", *names)
    }


def answers_in_python(sitemap):
    placements = list(Placement.objects.filter(listing__sitemap=sitemap).select_related("listing__sitemap"))
    tags = effective_tags(placements, ["image_type", "color"])
    return {pk: {task: (tag.label, tag.source) for task, tag in by_task.items()} for pk, by_task in tags.items()}


def test_python_and_sql_agree_on_every_combination_and_a_placeholder_has_no_color(every_combination):
    sitemap, count = every_combination

    python, sql = answers_in_python(sitemap), answers_in_sql(sitemap)

    assert len(python) == count
    assert python == sql
    sources = {source for tags in python.values() for _, source in tags.values()}
    assert sources == set(Source.ALL)  # the combinations reach every step of the rule, and the default

    # Without an active model for the image type (nor for color), the two still agree.
    ModelHead.objects.update(is_active=False)
    python, sql = answers_in_python(sitemap), answers_in_sql(sitemap)
    assert python == sql
    assert {source for tags in python.values() for _, source in tags.values()} == {
        Source.FIX, Source.SCRAPE, Source.FAILED, Source.UNKNOWN, Source.RULE
    }  # fmt: skip

    # A placeholder has no color, whatever else says one.
    ModelHead.objects.update(is_active=True)
    for tags in answers_in_python(sitemap).values():
        if tags["image_type"][0] == "Placeholder":
            assert tags["color"] == (None, Source.RULE)
        else:
            assert tags["color"][1] != Source.RULE


def test_decide_walks_the_steps_in_order():
    assert [step.source for step in RULE] == ["rule", "fix", "scrape", "model", "failed"]
    # A fix beats the scrape, which beats the model; a placeholder's color is none even with a color fix.
    assert decide("color", Inputs(fix_label="Red", scrape_color="Blue", model_status="ok", model_label="Green")) == (
        "Red", "fix"
    )  # fmt: skip
    assert decide("color", Inputs(scrape_color="Blue", model_status="ok", model_label="Green")) == ("Blue", "scrape")
    assert decide("color", Inputs(fix_label="Red", type_label="Placeholder")) == (None, "rule")
    # The scrape and the placeholder rule are about color only.
    assert decide("image_type", Inputs(scrape_color="Blue", type_label="Placeholder")) == (None, "unknown")
    assert decide("image_type", Inputs(model_status="failed")) == (None, "failed")
    assert decide("image_type", Inputs(placement_status="failed")) == (None, "failed")
