"""What one inference batch holds (issue 18: a worker stays under 500 MB): its images decoded reduced to the models'
size, never at full size, and the models run a few images at a time."""

from __future__ import annotations

import pytest

from catalog.imaging import inspect_image
from catalog.services.assets import asset_get_or_create
from classifier.models import Classification
from classifier.runtime import ClassifierModel
from classifier.services.inference import INFER_CHUNK, active_models, classify_assets
from tests.catalog.floods import flood_png, record_image_allocations

pytestmark = pytest.mark.django_db


@pytest.fixture
def allocations(monkeypatch):
    return record_image_allocations(monkeypatch)


def test_a_batch_decodes_a_big_png_reduced_to_the_models_size_never_at_full_size(register_tiny, allocations):
    register_tiny(size=(224, 224))
    side = 3000  # 9 MP: 36 MB in RGBA at full size
    data = flood_png((200, 30, 30, 255), side)
    asset, _ = asset_get_or_create(facts=inspect_image(data), data=data)
    allocations.clear()

    classify_assets([asset], active_models())

    assert Classification.objects.filter(asset=asset, status="ok").exists()
    assert allocations, "the hook saw no image"
    assert max(allocations) < side * side // 4


def test_the_models_of_a_batch_run_a_few_images_at_a_time(register_tiny, monkeypatch):
    register_tiny()
    colors = [(220, 30, 30), (30, 200, 40), (20, 40, 230)]
    assets = []
    for n in range(2 * INFER_CHUNK + 3):
        data = flood_png((*colors[n % 3], 255 - n), 64)
        assets.append(asset_get_or_create(facts=inspect_image(data), data=data)[0])
    rows: list[int] = []
    run = ClassifierModel.run

    def recording(self, tensors):
        rows.append(len(tensors))
        return run(self, tensors)

    monkeypatch.setattr(ClassifierModel, "run", recording)

    classify_assets(assets, active_models())

    assert rows == [INFER_CHUNK, INFER_CHUNK, 3]
    assert Classification.objects.filter(task="color", status="ok").count() == len(assets)
