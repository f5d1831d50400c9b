"""A Run tags its images with the active models: cached per content and model version, crops from the
detector cached per asset, failures recorded as failures, and effective tags that say where they came from."""

import io
import json

import pytest
from django.core.management import call_command
from PIL import Image

from catalog.inventory_server import InventoryServer
from catalog.models import Listing, Placement, Sitemap
from catalog.services.runs import run_execute, run_start
from classifier.models import Classification, Detection
from classifier.services.registry import model_register
from reviews.selectors import Source, effective_tags
from tests.classifier.onnx_builders import classifier_contract, mean_classifier, yolo_output
from tests.factories import SitemapFactory

pytestmark = pytest.mark.django_db(transaction=True)

RGB = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 230)}


def solid_jpeg(color, size=(800, 600)):
    buffer = io.BytesIO()
    Image.new("RGB", size, RGB[color]).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def run_sync(sitemap, **kwargs):
    run = run_start(sitemap=sitemap, enqueue=False, **kwargs)
    run_execute(run_id=run.pk, inline=True)
    run.refresh_from_db()
    return run


@pytest.fixture
def server():
    with InventoryServer(images=[solid_jpeg(c) for c in ("red", "green", "blue", "red")], images_per_listing=2) as s:
        yield s


def test_a_run_classifies_every_new_asset_once_per_model_version(server, register_tiny):
    first_model = register_tiny(name="first")
    sitemap = SitemapFactory(url=server.sitemap_url)

    run = run_sync(sitemap)

    assert (run.status, run.urls, run.classified) == ("succeeded", 4, 3)  # the two red photos are one asset
    labels = dict(Classification.objects.filter(task="color").values_list("asset__placements__url", "label"))
    assert labels == {server.image_url(i): c for i, c in enumerate(("red", "green", "blue", "red"))}
    result = Classification.objects.filter(task="color", label="green").get()
    assert result.confidence == pytest.approx(max(result.scores.values()))
    assert result.margin == pytest.approx(sorted(result.scores.values())[-1] - sorted(result.scores.values())[-2])
    assert (result.model_version, result.crop_source, result.crop_box) == (first_model, "none", None)
    assert Classification.objects.filter(task="sensitive").count() == 3

    assert run_sync(sitemap).classified == 0  # the cache: nothing new, nothing classified

    second = register_tiny(name="second", size=(16, 16))
    rerun = run_sync(sitemap)
    assert rerun.classified == 3
    assert Classification.objects.filter(model_version=second).count() == 6
    assert Classification.objects.count() == 12  # the first model's results stay, as history


def test_the_vehicle_crop_comes_from_the_detector_and_is_cached_per_asset(server, register_tiny, register_detector):
    # One box in the detector's 32x32 letterboxed input: centre (16, 16), 16 x 8 -> on an 800x600 image
    # (scaled by 0.04 to 32 x 24, padded 4 px top and bottom) that is x 200..600, y 200..400.
    register_detector(yolo_output([(16, 16, 16, 8, 0, 0.9)], classes=1))
    register_tiny(crop="vehicle")
    sitemap = SitemapFactory(url=server.sitemap_url)

    run_sync(sitemap)

    color = Classification.objects.filter(task="color").first()
    assert color.crop_source == "detector"
    assert color.crop_box == pytest.approx([200, 200, 600, 400], abs=3)
    assert Detection.objects.count() == 3  # one per distinct image content
    assert Detection.objects.first().box == color.crop_box

    # A new classifier reuses the cached boxes: the detector does not run again.
    register_tiny(name="second", crop="vehicle", size=(16, 16))
    run_sync(sitemap)
    assert Detection.objects.count() == 3
    assert set(Classification.objects.filter(task="color").values_list("crop_source", flat=True)) == {"detector"}


def test_no_vehicle_found_means_the_whole_image_recorded_as_such(server, register_tiny, register_detector):
    register_detector(yolo_output([(16, 16, 16, 8, 0, 0.1)], classes=1))  # below the confidence threshold
    register_tiny(crop="vehicle")
    run_sync(SitemapFactory(url=server.sitemap_url))
    assert set(Classification.objects.values_list("crop_source", flat=True)) == {"no_vehicle"}
    assert set(Detection.objects.values_list("box", flat=True)) == {None}


def test_a_failed_inference_is_a_failure_never_a_default_tag(server, register_tiny):
    model = register_tiny()
    model.file.storage.delete(model.file.name)  # the model file is gone: every inference fails
    sitemap = SitemapFactory(url=server.sitemap_url)

    run = run_sync(sitemap)

    assert run.status == "partial"
    assert run.failure_reasons == {"classification_failed": 6}  # 3 images x 2 tasks
    assert run.classified == 0
    failed = Classification.objects.filter(task="color").first()
    assert (failed.status, failed.label, failed.confidence) == ("failed", "", None)
    assert failed.error
    placement = Placement.objects.select_related("listing__sitemap").first()
    tag = effective_tags([placement])[placement.pk]["color"]
    assert (tag.label, tag.source) == (None, Source.FAILED)
    assert tag.reason


def test_effective_color_prefers_the_scrape_then_the_model(server, register_tiny):
    register_tiny()
    feed = {
        "format": "imagetagger-feed/1",
        "listings": [
            {"external_id": "a", "url": f"{server.base_url}/cars/0", "images": [server.image_url(0)],
             "attributes": {"color": "gray"}},
            {"external_id": "b", "url": f"{server.base_url}/cars/1", "images": [server.image_url(1)]},
        ],
    }  # fmt: skip
    run_sync(SitemapFactory(kind=Sitemap.Kind.FEED, url=""), feed_document=feed)

    placements = list(Placement.objects.select_related("listing__sitemap").order_by("listing__external_id"))
    tags = effective_tags(placements)
    scraped, modelled = tags[placements[0].pk], tags[placements[1].pk]
    assert (scraped["color"].label, scraped["color"].source) == ("Grey", Source.SCRAPE)
    assert (modelled["color"].label, modelled["color"].source) == ("green", Source.MODEL)
    assert modelled["color"].confidence > 0.3
    assert (modelled["image_type"].source, modelled["image_type"].reason) == (Source.UNKNOWN, "no active model")
    assert Listing.objects.get(external_id="a").attributes == {"color": "gray"}


def test_classify_file_prints_every_active_task(tmp_path, capsys, register_tiny, register_detector):
    register_tiny()
    path = tmp_path / "blue.jpg"
    path.write_bytes(solid_jpeg("blue"))

    call_command("classify_file", str(path), "--json")

    out = json.loads(capsys.readouterr().out)
    assert out["file"] == str(path)
    assert out["tags"]["color"]["label"] == "blue"
    assert set(out["tags"]) == {"color", "sensitive"}
    assert out["crop"] is None


def test_a_model_trained_elsewhere_registers_with_its_own_labels():
    # Labels are the model's business: a model trained elsewhere registers with its own labels.
    contract = classifier_contract(color_labels=("Rot", "Grün", "Blau"))
    version = model_register(data=mean_classifier(), contract=contract)
    assert version.heads.get(task="color").labels == ["Rot", "Grün", "Blau"]
    assert (version.status, version.heads.filter(is_active=True).count()) == ("candidate", 0)


def test_inline_classification_spreads_batches_over_processes(register_tiny, settings):
    settings.CLASSIFY_BATCH_SIZE = 2
    settings.CLASSIFY_INLINE_PROCESSES = 2
    register_tiny()
    images = [solid_jpeg(color, size=(640 + i, 480)) for i, color in enumerate(["red", "green", "blue"] * 3)]
    with InventoryServer(images=images, images_per_listing=3) as server:
        run = run_sync(SitemapFactory(url=server.sitemap_url))

    assert (run.status, run.classified) == ("succeeded", 9)
    assert Classification.objects.filter(status="ok").count() == 18
    sizes = dict(Classification.objects.filter(task="color").values_list("asset__width", "label"))
    assert sizes == {640 + i: color for i, color in enumerate(["red", "green", "blue"] * 3)}


def test_a_model_activated_for_one_task_shares_the_run_with_the_older_one(server, register_tiny):
    first = register_tiny(name="first")
    second = register_tiny(name="second", activate=False, size=(16, 16))
    call_command("activate_model", str(second.pk), "--task", "color")

    run_sync(SitemapFactory(url=server.sitemap_url))

    served = set(Classification.objects.values_list("task", "model_version__name"))
    assert served == {("color", "second"), ("sensitive", "first")}
    first.refresh_from_db()
    assert first.status == "active"  # still serves sensitive
