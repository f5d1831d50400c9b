"""An advertiser's inventory as the portal's home reads it: an active image-type model, images it tagged, failed
ones, fixes and staff decisions. Rows written here directly get their stored effective tags refreshed at once, as
the pipeline's and the services' writers do (reviews.effective_store)."""

from __future__ import annotations

import hashlib

from catalog.models import ImageAsset, Placement, Sitemap
from classifier.models import Classification, ModelHead, ModelVersion
from reviews.effective_store import effective_tags_refresh
from reviews.models import ManualFix
from reviews.services import review_decision_record
from tests.classifier.onnx_builders import region_contract
from tests.factories import ListingFactory, PlacementFactory, UserFactory

from .export_helpers import stored_asset

_seeds = iter(range(10_000, 1_000_000))


def image_type_model(name: str = "resnet-internal-v7") -> ModelVersion:
    """An active image-type model version (its results are written by the tests, not computed)."""
    version = ModelVersion.objects.create(
        name=name, kind="classifier", file=f"models/{name}.onnx", sha256=hashlib.sha256(name.encode()).hexdigest(),
        contract=region_contract(name=name), status="active",
    )  # fmt: skip
    ModelHead.objects.create(
        model_version=version, task="image_type", output="image_type", labels=["Dealer", "Stock", "Placeholder"],
        is_active=True,
    )  # fmt: skip
    return version


def tagged(
    sitemap: Sitemap,
    model: ModelVersion,
    label: str | None,
    *,
    error: str = "",
    asset: ImageAsset | None = None,
    **kwargs: object,
) -> Placement:
    """A live image of the sitemap (a new listing) with a stored picture that the model tagged `label` (None: the
    model failed with `error`)."""
    asset = asset or stored_asset(next(_seeds))
    placement = PlacementFactory(listing=ListingFactory(sitemap=sitemap), asset=asset, status="ok", **kwargs)
    if label is None:
        Classification.objects.get_or_create(
            asset=asset, model_version=model, task="image_type",
            defaults={"status": Classification.Status.FAILED, "error": error or "no result"},
        )  # fmt: skip
    else:
        Classification.objects.get_or_create(
            asset=asset, model_version=model, task="image_type",
            defaults={"label": label, "confidence": 0.8, "margin": 0.6173, "scores": {label: 0.8},
                      "crop_box": [12, 34, 60, 50], "crop_source": Classification.CropSource.DETECTOR},
        )  # fmt: skip
    effective_tags_refresh(placement_ids=[placement.pk])
    return placement


def unfetched(sitemap: Sitemap, reason: str = "http_404") -> Placement:
    """An image URL that could not be downloaded: no picture."""
    placement = PlacementFactory(listing=ListingFactory(sitemap=sitemap), status="failed", failure_reason=reason)
    effective_tags_refresh(placement_ids=[placement.pk])
    return placement


def advertiser_fix(placement: Placement, label: str, *, user=None) -> ManualFix:
    fix = ManualFix.objects.create(
        advertiser_id=placement.listing.sitemap.advertiser_id, asset=placement.asset, task="image_type",
        old_label="", new_label=label, source=ManualFix.Source.ADVERTISER, user=user,
    )  # fmt: skip
    effective_tags_refresh(advertiser_id=fix.advertiser_id, asset_ids=[fix.asset_id])
    return fix


def staff_decision(placement: Placement, label: str) -> ManualFix:
    """A decision from the staff review queue (it settles the scope)."""
    staff = UserFactory(username="queue-reviewer", is_staff=True)
    return review_decision_record(placement=placement, task="image_type", label=label, user=staff)
