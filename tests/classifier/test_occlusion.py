"""Occlusion maps: the hot region of a real (tiny) ONNX model whose answer hangs on one corner, the stored map
through the service with the production crop, its cache, and the clear errors."""

import io

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image

from catalog.imaging import inspect_image
from catalog.services.assets import asset_get_or_create
from classifier.contract import parse_contract
from classifier.models import Classification, OcclusionMap
from classifier.occlusion import heatmap_png, heatmap_rgba, occlusion_map, patch_positions, spread_to_pixels
from classifier.runtime import ClassifierModel, make_session
from classifier.services.inference import active_models, classify_assets, forget_sessions
from classifier.services.occlusion import (
    OcclusionError,
    occlusion_compute,
    occlusion_request,
    occlusion_request_for_placement,
)
from classifier.services.registry import model_register
from tests.classifier.onnx_builders import IMAGE_TYPE_LABELS, region_classifier, region_contract
from tests.factories import PlacementFactory

PLACEHOLDER = IMAGE_TYPE_LABELS.index("Placeholder")


def corner_picture(size=32, corner=8, background=40):
    """Dark everywhere but a white top-left corner: the region the model reads."""
    pixels = np.full((size, size, 3), background, dtype=np.uint8)
    pixels[:corner, :corner] = 255
    return pixels


def region_scores():
    contract = parse_contract(region_contract())
    model = ClassifierModel(make_session(region_classifier()), contract)

    def score(images):
        tensors = np.stack([image.astype(np.float32) / 255 for image in images])
        results = model.run(tensors)["image_type"]
        return np.array([[r.scores[label] for label in IMAGE_TYPE_LABELS] for r in results])

    return score


# --- the pure algorithm, on a real ONNX session --------------------------------------------------------------


def test_the_hot_cell_is_the_patch_that_decides_the_label_and_the_rest_is_cold():
    score = region_scores()
    picture = corner_picture()
    assert score(picture[None])[0].argmax() == PLACEHOLDER

    grid = occlusion_map(score, picture, label_index=PLACEHOLDER, patch=8, stride=8)

    assert grid.shape == (4, 4)
    assert np.unravel_index(grid.argmax(), grid.shape) == (0, 0)
    assert grid[0, 0] > 0.4  # hiding the corner turns Placeholder into a coin toss with Stock
    cold = grid.copy()
    cold[0, 0] = 0
    assert np.abs(cold).max() < 1e-6  # the model never reads anywhere else


def test_with_overlapping_patches_only_those_touching_the_corner_are_hot():
    score = region_scores()
    calls = []

    grid = occlusion_map(
        score, corner_picture(), label_index=PLACEHOLDER, patch=4, stride=2, batch_size=50,
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip

    starts = patch_positions(32, 4, 2)
    assert grid.shape == (len(starts), len(starts)) == (15, 15)
    touching = np.array([start < 8 for start in starts])
    hot = np.outer(touching, touching)
    assert (grid[hot] > 1e-3).all()
    assert np.abs(grid[~hot]).max() < 1e-6
    row, col = np.unravel_index(grid.argmax(), grid.shape)
    assert starts[row] < 8
    assert starts[col] < 8
    assert calls == [(50, 225), (100, 225), (150, 225), (200, 225), (225, 225)]  # once per batch


def test_a_patch_that_raises_the_score_counts_as_a_negative_drop():
    score = region_scores()
    dark_corner = corner_picture()
    dark_corner[:8, :8] = 0  # grey over a black corner brightens it: more Placeholder

    grid = occlusion_map(score, dark_corner, label_index=PLACEHOLDER, patch=8, stride=8)

    assert grid[0, 0] < 0
    assert heatmap_rgba(grid, (32, 32))[..., 3].max() == 0  # nothing dropped: nothing drawn


def test_patch_positions_cover_the_last_pixels():
    assert patch_positions(10, 4, 4) == [0, 4, 6]
    assert patch_positions(8, 4, 4) == [0, 4]
    with pytest.raises(ValueError, match="does not fit"):
        patch_positions(3, 4, 1)


def test_spread_to_pixels_averages_the_patches_covering_each_pixel():
    grid = np.array([[1.0, 0.0], [0.0, 0.0]])
    pixels = spread_to_pixels(grid, shape=(6, 6), patch=4, stride=2)
    assert pixels[0, 0] == 1.0  # one patch, the hot one
    assert pixels[3, 3] == pytest.approx(0.25)  # four patches, one hot
    assert pixels[5, 5] == 0.0


def test_the_heatmap_png_is_transparent_where_nothing_dropped_and_hot_where_the_drop_is_largest():
    grid = np.zeros((4, 4))
    grid[0, 0] = 0.5
    pixels = spread_to_pixels(grid, shape=(32, 32), patch=8, stride=8)

    png = Image.open(io.BytesIO(heatmap_png(pixels, (320, 240))))

    assert (png.format, png.mode, png.size) == ("PNG", "RGBA", (320, 240))
    rgba = np.asarray(png)
    assert tuple(rgba[5, 5]) == (255, 255, 0, 220)  # the largest drop: yellow, nearly opaque
    assert rgba[200:, 200:, 3].max() == 0  # far from it: fully transparent


# --- the service, with a registered model and a stored asset -------------------------------------------------


def stored_asset(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    data = buffer.getvalue()
    asset, _ = asset_get_or_create(facts=inspect_image(data), data=data)
    return asset


@pytest.fixture
def region_model():
    forget_sessions()  # sessions are cached per version id, per process
    yield model_register(data=region_classifier(), contract=region_contract(), activate=True)
    forget_sessions()


@pytest.fixture
def placeholder_asset(region_model):
    """A 128x128 picture with a white 32x32 top-left corner, classified Placeholder by the real pipeline."""
    asset = stored_asset(corner_picture(size=128, corner=32))
    classify_assets([asset], active_models())
    assert Classification.objects.get(asset=asset, task="image_type").label == "Placeholder"
    return asset


@pytest.mark.django_db
def test_a_request_queues_the_map_after_commit_and_the_worker_finds_the_corner(
    placeholder_asset, region_model, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as enqueued:
        row = occlusion_request(asset=placeholder_asset, task="image_type")

    assert (row.status, row.label, row.model_version, row.crop_box) == ("queued", "Placeholder", region_model, None)
    assert len(enqueued) == 1  # the Celery task, sent once the row is committed

    done = occlusion_compute(map_id=row.pk)

    assert done is not None
    assert (done.status, done.progress, done.error) == ("done", 1.0, "")
    drops = np.array(done.grid["drops"])
    starts = patch_positions(32, done.grid["patch"], done.grid["stride"])
    r, c = np.unravel_index(drops.argmax(), drops.shape)
    assert starts[r] < 8
    assert starts[c] < 8
    far = np.array([s >= 8 for s in starts])
    assert np.abs(drops[np.outer(far, far)]).max() < 1e-4
    assert done.grid["crop"] == [0, 0, 128, 128]
    assert done.grid["image_size"] == [128, 128]
    heatmap = Image.open(done.heatmap.open("rb"))
    assert (heatmap.mode, heatmap.size) == ("RGBA", (128, 128))
    assert np.asarray(heatmap)[5, 5, 3] > 150
    assert np.asarray(heatmap)[120, 120, 3] == 0


@pytest.mark.django_db
def test_a_done_map_is_the_cache_and_compute_is_idempotent(
    placeholder_asset, eager_celery, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):  # the commit sends the task, run in-process
        first = occlusion_request(asset=placeholder_asset, task="image_type")
    first.refresh_from_db()
    assert first.status == "done"
    stored = first.heatmap.name

    with django_capture_on_commit_callbacks() as enqueued:
        again = occlusion_request(asset=placeholder_asset, task="image_type", label="Placeholder")

    assert (again.pk, again.status, again.heatmap.name) == (first.pk, "done", stored)
    assert enqueued == []  # nothing recomputed
    updated = again.updated_at
    occlusion_compute(map_id=first.pk)  # a redelivered task message: nothing happens
    first.refresh_from_db()
    assert (first.updated_at, first.heatmap.name) == (updated, stored)
    assert OcclusionMap.objects.count() == 1


@pytest.mark.django_db
def test_another_label_is_its_own_map(placeholder_asset, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        stock = occlusion_request(asset=placeholder_asset, task="image_type", label="Stock")
    occlusion_compute(map_id=stock.pk)
    stock.refresh_from_db()
    assert stock.label == "Stock"
    assert stock.status == "done"
    assert np.array(stock.grid["drops"]).min() < -0.01  # hiding the corner makes Stock more likely
    with pytest.raises(OcclusionError, match="'Red' is not a label of region for image_type: Dealer, Stock"):
        occlusion_request(asset=placeholder_asset, task="image_type", label="Red")


@pytest.mark.django_db
def test_the_map_uses_the_production_crop_of_a_vehicle_model(django_capture_on_commit_callbacks):
    forget_sessions()
    version = model_register(
        data=region_classifier(gain=9.0), contract=region_contract(crop="vehicle", name="cropped"), activate=True
    )
    asset = stored_asset(corner_picture(size=128, corner=16))
    Classification.objects.create(
        asset=asset, model_version=version, task="image_type", label="Placeholder", confidence=0.9, margin=0.8,
        scores={}, crop_box=[0, 0, 64, 64], crop_source="detector",
    )  # fmt: skip

    with django_capture_on_commit_callbacks():
        row = occlusion_request(asset=asset, task="image_type")
    done = occlusion_compute(map_id=row.pk)

    assert done is not None
    assert done.status == "done", done.error
    assert done.crop_box == [0, 0, 64, 64] == done.grid["crop"]
    assert Image.open(done.heatmap.open("rb")).size == (64, 64)  # drawn over the crop, not the whole picture
    # In the crop, the white 16x16 corner is the model's whole 8x8 region (the crop is stretched 2:1).
    assert done.grid["baseline"] > 0.95
    forget_sessions()


@pytest.mark.django_db
def test_clear_errors_for_images_without_an_answer_to_explain(region_model, placeholder_asset):
    with pytest.raises(OcclusionError, match="no downloaded picture"):
        occlusion_request(asset=None, task="image_type")

    failed = PlacementFactory(status="failed", failure_reason="http_404", failure_detail="HTTP 404")
    with pytest.raises(OcclusionError, match=r"failed to download \(http_404 HTTP 404\)"):
        occlusion_request_for_placement(placement=failed, task="image_type")
    with pytest.raises(OcclusionError, match="not been downloaded yet"):
        occlusion_request_for_placement(placement=PlacementFactory(), task="image_type")

    with pytest.raises(OcclusionError, match="no active model tags color"):
        occlusion_request(asset=placeholder_asset, task="color")
    with pytest.raises(OcclusionError, match="unknown task 'shape'"):
        occlusion_request(asset=placeholder_asset, task="shape")

    unclassified = stored_asset(corner_picture(size=64, corner=4, background=90))
    with pytest.raises(OcclusionError, match="has not classified this image yet"):
        occlusion_request(asset=unclassified, task="image_type")

    Classification.objects.create(
        asset=unclassified, model_version=region_model, task="image_type", status="failed", error="decode: truncated"
    )
    with pytest.raises(OcclusionError, match=r"failed on this image \(decode: truncated\)"):
        occlusion_request(asset=unclassified, task="image_type", label="Stock")
    assert not OcclusionMap.objects.exists()


@pytest.mark.django_db
def test_a_computation_that_fails_is_recorded_and_a_new_request_queues_it_again(
    placeholder_asset, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        row = occlusion_request(asset=placeholder_asset, task="image_type")
    default_storage.delete(placeholder_asset.original.name)  # the original vanished from storage

    failed = occlusion_compute(map_id=row.pk)

    assert failed is not None
    assert failed.status == "failed"
    assert "FileNotFoundError" in failed.error
    with django_capture_on_commit_callbacks() as enqueued:
        retried = occlusion_request(asset=placeholder_asset, task="image_type")
    assert (retried.pk, retried.status, retried.error, len(enqueued)) == (row.pk, "queued", "", 1)


@pytest.mark.django_db
def test_a_letterboxed_model_gets_a_heatmap_of_the_picture_without_the_padding(django_capture_on_commit_callbacks):
    forget_sessions()
    model_register(
        data=region_classifier(gain=8.0), contract=region_contract(resize="letterbox", name="boxed"), activate=True
    )
    wide = np.full((64, 128, 3), 40, dtype=np.uint8)  # letterboxed to 32x16 with 8 rows of padding above
    asset = stored_asset(wide)
    classify_assets([asset], active_models())

    with django_capture_on_commit_callbacks():
        row = occlusion_request(asset=asset, task="image_type", label="Placeholder")
    done = occlusion_compute(map_id=row.pk)

    assert done is not None
    assert done.status == "done", done.error
    heatmap = np.asarray(Image.open(done.heatmap.open("rb")))
    assert heatmap.shape == (64, 128, 4)  # the picture's shape, not the square input's
    assert heatmap[32:, :, 3].max() == 0  # the model reads the padding corner only: nothing lower is hot
    forget_sessions()
