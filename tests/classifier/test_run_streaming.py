"""A Run streams its new images to the models while it fetches: the fetch's processes classify each new image on the
decode that made its keys, inline and through a worker (settings.RUN_CLASSIFY_IN_FETCH); with that off, batches of new
assets go to the inference queue during the fetch, and a batch that arrives while the Run is still fetching classifies
without finishing it. Observed at the end of the
fetch step by a RUN_AFTER_FETCH hook, with counters and rows exact: no timing anywhere."""

import io

import pytest
from PIL import Image

from catalog.inventory_server import InventoryServer
from catalog.models import ImageAsset, Placement, Run
from catalog.services.runs import run_execute, run_start
from classifier.models import Classification
from tests.factories import SitemapFactory

pytestmark = pytest.mark.django_db(transaction=True)

COLORS = [(220, 30, 30), (30, 200, 40), (20, 40, 230), (210, 170, 30), (30, 200, 160), (210, 30, 170), (120, 80, 60)]
#: What the hooks saw, by name: the fetch step's end, and every finish of a Run.
seen: dict[str, list[dict]] = {}


def at_fetch_end(*, run: Run) -> None:
    """A RUN_AFTER_FETCH hook: the Run and its classifications as the fetch step ends, before the classify step."""
    state = Run.objects.get(pk=run.pk)
    results = Classification.objects.filter(asset__placements__listing__sitemap_id=run.sitemap_id).distinct()
    seen.setdefault("fetch_end", []).append(
        {
            "step": state.step,
            "status": state.status,
            "ok": results.filter(status="ok").count(),
            "failed": results.exclude(status="ok").count(),
            "classified_assets": results.values("asset_id").distinct().count(),
        }
    )


def at_finish(*, run: Run) -> None:
    seen.setdefault("finish", []).append({"run": run.pk, "status": run.status})


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (800, 600)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def hooks(settings):
    seen.clear()
    settings.RUN_AFTER_FETCH = [*settings.RUN_AFTER_FETCH, f"{__name__}.at_fetch_end"]
    settings.RUN_AFTER_FINISH = [*settings.RUN_AFTER_FINISH, f"{__name__}.at_finish"]
    yield seen
    seen.clear()


@pytest.fixture
def server():
    # Seven pictures, and the first one again under an eighth URL: one asset, a cache hit.
    images = [jpeg(color) for color in COLORS] + [jpeg(COLORS[0])]
    with InventoryServer(images=images, images_per_listing=4) as served:
        yield served


def test_an_inline_run_classifies_each_new_image_in_the_fetch_on_the_decode_that_keyed_it(
    server, hooks, register_tiny, settings, monkeypatch
):
    settings.RUN_FETCH_PROCESSES = 2
    register_tiny()  # color and sensitive

    def second_decode(*args, **kwargs):
        raise AssertionError("a new image was decoded a second time")

    # Both ways to decode again (the stream's fallback, the classify step's batches): the forked fetch processes
    # inherit the patch, so a second decode anywhere would store failures instead of labels.
    monkeypatch.setattr("classifier.services.pipeline.decode", second_decode)
    monkeypatch.setattr("classifier.services.inference.decode", second_decode)
    run = run_start(sitemap=SitemapFactory(url=server.sitemap_url), enqueue=False)

    run_execute(run_id=run.pk, inline=True)

    run.refresh_from_db()
    # Every new image was classified before the fetch step ended, by the fetch itself.
    assert hooks["fetch_end"] == [{"step": "fetch", "status": "running", "ok": 14, "failed": 0, "classified_assets": 7}]
    counters = (run.status, run.urls, run.downloaded, run.cache_hits, run.not_modified, run.failed, run.classified)
    assert counters == ("succeeded", 8, 7, 1, 0, 0, 7), run.counters()
    assert (ImageAsset.objects.count(), Placement.objects.count(), Classification.objects.count()) == (7, 8, 14)
    labels = dict(Classification.objects.filter(task="color").values_list("asset__placements__url", "label"))
    expected = ["red", "green", "blue", "red", "green", "red", "red", "red"]  # the channel with the highest mean
    assert labels == {server.image_url(i): label for i, label in enumerate(expected)}
    assert hooks["finish"] == [{"run": run.pk, "status": "succeeded"}]


def test_a_worker_run_decodes_each_new_image_once_and_sends_nothing_to_the_inference_queue(
    server, hooks, register_tiny, settings, monkeypatch
):
    settings.RUN_FETCH_PROCESSES = 2
    settings.RUN_CLASSIFY_IN_FETCH = True
    register_tiny()

    def second_decode(*args, **kwargs):
        raise AssertionError("a new image was decoded a second time")

    def sent(*args, **kwargs):
        raise AssertionError("a batch was sent to the inference queue")

    monkeypatch.setattr("classifier.services.pipeline.decode", second_decode)
    monkeypatch.setattr("classifier.services.inference.decode", second_decode)
    monkeypatch.setattr("classifier.tasks.classify_batch_task.apply_async", sent)
    run = run_start(sitemap=SitemapFactory(url=server.sitemap_url), enqueue=False)

    run_execute(run_id=run.pk, inline=False)  # as a worker carries it

    run.refresh_from_db()
    # Classified in the fetch, on the decode that keyed each image; the classify step found nothing left and finished
    # the Run in the worker that carried it.
    assert hooks["fetch_end"] == [{"step": "fetch", "status": "running", "ok": 14, "failed": 0, "classified_assets": 7}]
    counters = (run.status, run.step, run.urls, run.downloaded, run.cache_hits, run.failed, run.classified)
    assert counters == ("succeeded", "done", 8, 7, 1, 0, 7), run.counters()
    assert hooks["finish"] == [{"run": run.pk, "status": "succeeded"}]


def test_a_worker_run_sends_batches_during_the_fetch_and_only_the_classify_step_finishes_it(
    server, hooks, register_tiny, settings, eager_celery
):
    settings.RUN_CLASSIFY_IN_FETCH = False  # the inference queue's path
    settings.CLASSIFY_BATCH_SIZE = 2
    register_tiny()
    run = run_start(sitemap=SitemapFactory(url=server.sitemap_url), enqueue=False)

    run_execute(run_id=run.pk, inline=False)

    run.refresh_from_db()
    # Batches of two went out as the fetch recorded its new assets, and were classified while the Run was fetching
    # (it stayed running, in its fetch step: none of them finished it). The seventh asset waited for the hand-over.
    (fetch_end,) = hooks["fetch_end"]
    assert (fetch_end["step"], fetch_end["status"], fetch_end["failed"]) == ("fetch", "running", 0)
    assert fetch_end["classified_assets"] == 6
    assert fetch_end["ok"] == 12
    counters = (run.status, run.step, run.urls, run.downloaded, run.cache_hits, run.failed, run.classified)
    assert counters == ("succeeded", "done", 8, 7, 1, 0, 7), run.counters()
    assert (ImageAsset.objects.count(), Classification.objects.filter(status="ok").count()) == (7, 14)
    assert Classification.objects.count() == 14  # one row per (asset, model, task)
    assert hooks["finish"] == [{"run": run.pk, "status": "succeeded"}]  # finished once, by the last batch


def test_a_batch_of_a_run_still_fetching_classifies_but_does_not_finish_it(server, register_tiny):
    from classifier.services.pipeline import classify_batch

    register_tiny()
    run = run_start(sitemap=SitemapFactory(url=server.sitemap_url), enqueue=False)
    run_execute(run_id=run.pk, inline=True)
    asset_ids = list(ImageAsset.objects.values_list("id", flat=True))
    Classification.objects.all().delete()
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING, step=Run.Step.FETCH, finished_at=None)

    assert classify_batch(run_id=run.pk, asset_ids=asset_ids) == 7

    run.refresh_from_db()
    assert (run.status, run.step) == ("running", "fetch")
    assert Classification.objects.filter(status="ok").count() == 14


def transparent_png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (800, 600), (*color, 160)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "worker"])
def test_an_image_whose_decode_cannot_serve_the_models_is_decoded_again_inline_and_queued_on_a_worker(
    inline, hooks, register_tiny, settings, eager_celery, monkeypatch
):
    """A transparent image's keys come from a decode the models cannot use (the two flatten it differently). Inline,
    the fetch process decodes it again; a worker's fetch processes leave it to the inference queue, so that two of
    them never hold two big decodes and the sessions at once (the worker's memory bound)."""
    settings.RUN_FETCH_PROCESSES = 2
    settings.RUN_CLASSIFY_IN_FETCH = True
    register_tiny()
    sent: list[list[int]] = []
    from classifier.tasks import classify_batch_task

    send = classify_batch_task.apply_async

    def counted(args, **kwargs):
        sent.append(list(args[1]))
        return send(args, **kwargs)

    monkeypatch.setattr(classify_batch_task, "apply_async", counted)
    images = [jpeg(COLORS[0]), jpeg(COLORS[1]), transparent_png(COLORS[2])]
    with InventoryServer(images=images, images_per_listing=3) as served:
        run = run_start(sitemap=SitemapFactory(url=served.sitemap_url), enqueue=False)
        run_execute(run_id=run.pk, inline=inline)

    run.refresh_from_db()
    (fetch_end,) = hooks["fetch_end"]
    transparent = ImageAsset.objects.get(format="PNG").pk
    if inline:
        assert (fetch_end["classified_assets"], sent) == (3, [])
    else:
        assert (fetch_end["classified_assets"], sent) == (2, [[transparent]])
    assert (run.status, run.downloaded, run.failed, run.classified) == ("succeeded", 3, 0, 3), run.counters()
    color = Classification.objects.get(asset_id=transparent, task="color")
    assert (color.status, color.label) == ("ok", "blue")
