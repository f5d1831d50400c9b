"""The shadow pass classifies every live image with a candidate through the production path, resumes after a
killed worker, and makes promotion instant; promotion waits for it unless forced; rollback is one call."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from PIL import Image

from catalog.imaging import inspect_image
from catalog.models import Placement
from catalog.services.assets import asset_get_or_create
from classifier.models import Classification, Detection, ModelHead, ModelVersion, Promotion, ShadowPass
from classifier.services import shadow as shadow_service
from classifier.services.inference import active_models, classify_assets, forget_sessions
from classifier.services.promotion import PromotionError, model_promote, model_rollback
from classifier.services.registry import model_register
from classifier.services.shadow import ShadowError, shadow_run, shadow_start
from config.celery_app import app
from reviews.selectors import Source, effective_tags
from tests.classifier.onnx_builders import classifier_contract, mean_classifier
from tests.factories import AdvertiserFactory, ListingFactory, PlacementFactory, SitemapFactory, UserFactory

pytestmark = pytest.mark.django_db

RGB = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 230)}
ACTIVE_LABELS = ("Red", "Green", "Blue")
# The candidate swaps green and blue: red images keep their tag, green and blue ones flip.
CANDIDATE_LABELS = ("Red", "Blue", "Green")


def stored_asset(color, width):
    buffer = io.BytesIO()
    Image.new("RGB", (width, 48), RGB[color]).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    return asset_get_or_create(facts=inspect_image(data), data=data)[0]


def place(advertiser, asset, **kwargs):
    listing = ListingFactory(sitemap=SitemapFactory(advertiser=advertiser), is_gone=kwargs.pop("listing_gone", False))
    return PlacementFactory(listing=listing, asset=asset, status=Placement.Status.OK, **kwargs)


@pytest.fixture(autouse=True)
def _fresh_sessions():
    forget_sessions()  # sessions are cached per version id, per process: ids repeat across tests
    yield
    forget_sessions()


@pytest.fixture
def models():
    active = model_register(
        data=mean_classifier(size=(8, 8)),
        contract=classifier_contract(name="active", color_labels=ACTIVE_LABELS),
        activate=True,
    )
    candidate = model_register(
        data=mean_classifier(size=(16, 16)),
        contract=classifier_contract(name="candidate", size=(16, 16), color_labels=CANDIDATE_LABELS),
    )
    return active, candidate


@pytest.fixture
def world(models):
    """Two advertisers, five live pictures (one shown at both), one gone placement and one in a gone listing,
    all classified by the active model as a Run would."""
    first, second = AdvertiserFactory(slug="first"), AdvertiserFactory(slug="second")
    colors = ["red", "green", "blue", "green", "blue"]
    assets = [stored_asset(color, 64 + i) for i, color in enumerate(colors)]
    live = [place(first, asset) for asset in assets[:3]] + [place(second, asset) for asset in assets[2:]]
    gone = stored_asset("red", 200)
    place(first, gone, is_gone=True)
    in_gone_listing = stored_asset("green", 201)
    place(second, in_gone_listing, listing_gone=True)
    classify_assets([*assets, gone, in_gone_listing], active_models())
    return {"assets": assets, "colors": colors, "live": live, "gone": [gone, in_gone_listing], "models": models}


def color_tags(placements):
    placements = list(Placement.objects.filter(pk__in=[p.pk for p in placements]).select_related("listing__sitemap"))
    tags = effective_tags(placements, ["color"])
    return {p.asset_id: (tags[p.pk]["color"].label, tags[p.pk]["color"].source) for p in placements}


def test_a_shadow_pass_classifies_every_live_asset_once_with_every_head(world):
    _, candidate = world["models"]

    shadow = shadow_start(version=candidate, enqueue=False)
    assert (shadow.status, shadow.total) == ("queued", 5)
    shadow = shadow_run(pass_id=shadow.pk)

    assert (shadow.status, shadow.done, shadow.total, shadow.progress) == ("succeeded", 5, 5, 1.0)
    rows = Classification.objects.filter(model_version=candidate)
    assert rows.count() == 10  # 5 live pictures x 2 heads; the gone ones are not classified
    assert not rows.filter(asset__in=world["gone"]).exists()
    assert set(rows.values_list("status", flat=True)) == {"ok"}
    labels = dict(rows.filter(task="color").values_list("asset_id", "label"))
    expected = {"red": "Red", "green": "Blue", "blue": "Green"}
    assert labels == {a.pk: expected[c] for a, c in zip(world["assets"], world["colors"], strict=True)}

    before = list(rows.order_by("id").values_list("id", "updated_at"))
    again = shadow_run(pass_id=shadow.pk)  # a redelivered message: the pass is done
    assert again.status == "succeeded"
    second = shadow_run(pass_id=shadow_start(version=candidate, enqueue=False).pk)  # a new pass: nothing to do
    assert (second.status, second.done, second.total) == ("succeeded", 5, 5)
    assert list(rows.order_by("id").values_list("id", "updated_at")) == before


class Killed(BaseException):
    """A worker killed mid-pass: nothing in the service gets to handle it."""


def test_a_killed_pass_resumes_where_it_stopped_without_classifying_twice(world, monkeypatch):
    _, candidate = world["models"]
    monkeypatch.setattr(shadow_service, "BATCH_SIZE", 2)
    shadow = shadow_start(version=candidate, enqueue=False)

    def kill_after_first_batch(current):
        if current.done >= 2:
            raise Killed

    with pytest.raises(Killed):
        shadow_run(pass_id=shadow.pk, progress=kill_after_first_batch)

    shadow.refresh_from_db()
    assert (shadow.status, shadow.done, shadow.total) == ("running", 2, 5)
    first_batch = dict(Classification.objects.filter(model_version=candidate).values_list("id", "updated_at"))
    assert len(first_batch) == 4  # 2 assets x 2 heads
    with pytest.raises(ShadowError, match="already running"):
        shadow_start(version=candidate, enqueue=False)

    seen = []
    shadow = shadow_run(pass_id=shadow.pk, progress=lambda current: seen.append(current.done))  # redelivered

    assert (shadow.status, shadow.done) == ("succeeded", 5)
    assert seen == [2, 4, 5, 5]  # resumed at 2
    rows = Classification.objects.filter(model_version=candidate)
    assert rows.count() == 10
    assert {pk: at for pk, at in rows.values_list("id", "updated_at") if pk in first_batch} == first_batch


def test_the_shadow_pass_reuses_the_cached_detector_boxes(world, monkeypatch):
    # A vehicle-crop candidate with an active detector whose boxes are already cached: the pass must not detect.
    from tests.classifier.onnx_builders import constant_detector, detector_contract, yolo_output

    detector = model_register(
        data=constant_detector(yolo_output([(16, 16, 16, 8, 0, 0.9)], classes=1)),
        contract=detector_contract(classes=["car"], vehicle_classes=[0]),
        activate=True,
    )
    box = [10, 10, 40, 30]
    Detection.objects.bulk_create(Detection(asset=a, model_version=detector, box=box) for a in world["assets"])
    cropped = model_register(
        data=mean_classifier(size=(12, 12)), contract=classifier_contract(name="cropped", size=(12, 12), crop="vehicle")
    )

    shadow_run(pass_id=shadow_start(version=cropped, enqueue=False).pk)

    rows = Classification.objects.filter(model_version=cropped, task="color")
    assert {(tuple(r.crop_box), r.crop_source) for r in rows} == {(tuple(box), "detector")}
    assert Detection.objects.count() == 5


def test_a_shadow_pass_is_refused_for_a_detector_the_active_model_and_twice_at_once(world):
    active, candidate = world["models"]
    with pytest.raises(ShadowError, match="active model"):
        shadow_start(version=active, enqueue=False)
    shadow_start(version=candidate, enqueue=False)
    with pytest.raises(ShadowError, match=r"already queued: pass \d+, 0 of 5 images"):
        shadow_start(version=candidate, enqueue=False)
    assert ShadowPass.objects.count() == 1


def test_a_pass_whose_worker_died_is_resumed_by_starting_it_again(world, django_capture_on_commit_callbacks):
    _, candidate = world["models"]
    shadow = shadow_start(version=candidate, enqueue=False)
    ShadowPass.objects.filter(pk=shadow.pk).update(
        status="running", updated_at=timezone.now() - shadow_service.STALE_AFTER - timedelta(seconds=1)
    )

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        again = shadow_start(version=candidate)

    assert (again.pk, len(callbacks)) == (shadow.pk, 1)
    assert ShadowPass.objects.count() == 1


def test_the_task_runs_on_the_training_queue(world, eager_celery, django_capture_on_commit_callbacks):
    _, candidate = world["models"]
    assert app.amqp.router.route({}, "classifier.shadow_pass")["queue"].name == "training"
    with django_capture_on_commit_callbacks(execute=True):
        shadow = shadow_start(version=candidate)
    shadow.refresh_from_db()
    assert (shadow.status, shadow.done) == ("succeeded", 5)


def test_promotion_waits_for_the_shadow_pass_unless_forced(world):
    active, candidate = world["models"]
    with pytest.raises(PromotionError, match=r"no shadow pass: 5 of 5 live images .* or force"):
        model_promote(version=candidate)

    shadow = shadow_start(version=candidate, enqueue=False)
    ShadowPass.objects.filter(pk=shadow.pk).update(status="running", done=2)
    with pytest.raises(PromotionError) as refused:
        model_promote(version=candidate)
    assert str(refused.value) == (
        "the shadow pass of candidate has classified 2 of 5 images: wait for it to finish, or force"
    )
    assert not Promotion.objects.exists()
    assert ModelHead.objects.get(task="color", is_active=True).model_version == active

    user = UserFactory()
    promotion = model_promote(version=candidate, user=user, force=True)
    assert (promotion.forced, promotion.user, promotion.from_version, promotion.kind) == (True, user, active, "promote")
    assert ModelHead.objects.get(task="color", is_active=True).model_version == candidate


def test_promotion_after_the_pass_is_instant_and_rollback_restores_the_tags(world, django_assert_max_num_queries):
    active, candidate = world["models"]
    live = world["live"]
    before = color_tags(live)
    assert {label for label, _ in before.values()} == {"Red", "Green", "Blue"}
    shadow_run(pass_id=shadow_start(version=candidate, enqueue=False).pk)
    cache = list(Classification.objects.order_by("id").values_list("id", "updated_at"))

    user = UserFactory()
    with django_assert_max_num_queries(30):
        promotion = model_promote(version=candidate, user=user)

    assert list(Classification.objects.order_by("id").values_list("id", "updated_at")) == cache  # no inference
    assert (promotion.task, promotion.forced, promotion.from_version, promotion.to_version) == (
        "color", False, active, candidate,
    )  # fmt: skip
    assert set(Promotion.objects.values_list("task", "kind", "user")) == {
        ("color", "promote", user.pk),
        ("sensitive", "promote", user.pk),
    }
    after = color_tags(live)
    swap = {"Red": "Red", "Green": "Blue", "Blue": "Green"}
    assert after == {asset: (swap[label], Source.MODEL) for asset, (label, _) in before.items()}
    active.refresh_from_db()
    assert active.status == "retired"

    rollback = model_rollback(task="color", user=user)

    assert (rollback.kind, rollback.from_version, rollback.to_version) == ("rollback", candidate, active)
    assert color_tags(live) == before
    # The promotion switched both heads: rolling it back switches both (one version active, not two).
    assert ModelHead.objects.get(task="sensitive", is_active=True).model_version == active
    assert set(Promotion.objects.filter(kind="rollback").values_list("task", flat=True)) == {"color", "sensitive"}
    assert list(Classification.objects.order_by("id").values_list("id", "updated_at")) == cache


def test_rollback_without_a_promotion_is_refused():
    with pytest.raises(PromotionError, match="no model was ever promoted for color"):
        model_rollback(task="color")


def test_a_promotion_with_nothing_to_classify_needs_no_shadow_pass(models):
    _, candidate = models  # no live image yet: the switch is instant anyway
    promotion = model_promote(version=candidate)
    assert promotion.forced is False
    with pytest.raises(PromotionError, match="already the active model"):
        model_promote(version=candidate)


def test_the_commands(world, capsys):
    active, candidate = world["models"]
    with pytest.raises(CommandError, match="no shadow pass"):
        call_command("activate_model", str(candidate.pk))

    call_command("shadow_pass", str(candidate.pk), "--sync")
    assert "5 of 5 images" in capsys.readouterr().out
    call_command("activate_model", candidate.sha256[:10])
    assert "candidate is active for: color, sensitive" in capsys.readouterr().out
    assert Promotion.objects.filter(forced=False).count() == 2

    call_command("rollback_model", "--task", "color")
    out = capsys.readouterr().out
    assert "color: active is active again (was candidate)" in out
    assert "sensitive: active is active again (was candidate)" in out
    assert ModelHead.objects.get(task="color", is_active=True).model_version == active

    third = model_register(data=mean_classifier(size=(4, 4)), contract=classifier_contract(name="third", size=(4, 4)))
    call_command("activate_model", str(third.pk), "--task", "color", "--force")
    assert "(forced: the shadow pass had not finished)" in capsys.readouterr().out
    assert Promotion.objects.get(to_version=third).forced is True
    with pytest.raises(CommandError, match="active model"):
        call_command("shadow_pass", str(third.pk))


def test_shadow_pass_command_queues_by_default(world, capsys, django_capture_on_commit_callbacks):
    _, candidate = world["models"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_command("shadow_pass", str(candidate.pk))
    shadow = ShadowPass.objects.get()
    assert f"shadow pass {shadow.pk} of candidate queued (5 live images)" in capsys.readouterr().out
    assert (shadow.status, len(callbacks)) == ("queued", 1)
    assert ModelVersion.objects.get(pk=candidate.pk).status == "candidate"


def test_activate_model_names_its_force_flag(world):
    # It refused with "... or force" and never said that the command's way is --force.
    active, candidate = world["models"]
    with pytest.raises(CommandError) as refused:
        call_command("activate_model", str(candidate.pk))

    assert str(refused.value).endswith(
        f"run `manage.py shadow_pass {candidate.pk}` and wait for it, or promote it anyway with --force"
    )
    assert ModelHead.objects.get(task="color", is_active=True).model_version == active
    call_command("activate_model", str(candidate.pk), "--force", stdout=io.StringIO())
    assert ModelHead.objects.get(task="color", is_active=True).model_version == candidate


def test_a_rollback_confirmed_for_one_promotion_does_not_undo_another(models):
    """The confirmation names the promotion a rollback undoes; if the models changed meanwhile (rolled back and
    promoted again), the rollback is refused rather than undoing what nobody confirmed."""
    _, candidate = models
    confirmed = model_promote(version=candidate, force=True)
    model_rollback(task="color")
    again = model_promote(version=candidate, force=True)

    with pytest.raises(PromotionError, match="changed since the confirmation"):
        model_rollback(task="color", undoes=confirmed.pk)
    assert ModelHead.objects.get(task="color", is_active=True).model_version == candidate

    assert model_rollback(task="color", undoes=again.pk).kind == "rollback"


def test_a_rollback_undoes_one_promotion_not_another_of_the_same_version(models):
    """Two promotions of the same candidate over the same model, for two tasks at two times: rolling one back leaves
    the other standing (each promotion's records share a batch id; the versions alone cannot tell them apart)."""
    active, candidate = models
    first = model_promote(version=candidate, force=True, tasks=["color"])
    second = model_promote(version=candidate, force=True, tasks=["sensitive"])
    assert (first.from_version, second.from_version) == (active, active)
    assert first.batch != second.batch

    rollback = model_rollback(task="color")

    heads = dict(ModelHead.objects.filter(is_active=True).values_list("task", "model_version"))
    assert (heads["color"], heads["sensitive"]) == (active.pk, candidate.pk)
    assert list(Promotion.objects.filter(kind="rollback").values_list("task", flat=True)) == ["color"]
    assert rollback.batch not in (None, first.batch, second.batch)


def test_a_rollback_undoes_every_task_of_the_promotion_it_names(models):
    active, candidate = models
    promotion = model_promote(version=candidate, force=True)  # color and sensitive, one batch
    assert Promotion.objects.filter(batch=promotion.batch).count() == 2

    model_rollback(task="sensitive")

    assert set(ModelHead.objects.filter(is_active=True).values_list("model_version", flat=True)) == {active.pk}
    rollbacks = Promotion.objects.filter(kind="rollback")
    assert sorted(rollbacks.values_list("task", flat=True)) == ["color", "sensitive"]
    assert len({record.batch for record in rollbacks}) == 1
