"""The loop proposes itself (reviews.services.retrain): from the labels made since the last training, both tasks get
an export, candidates and the best one's shadow pass, on the real starter model, and staff get the comparison by
email. The nightly job waits for enough new labels; promotion stays a human click."""

from __future__ import annotations

import pytest
from django.core import mail
from django_celery_beat.models import PeriodicTask

from classifier.models import ModelHead, ModelVersion, ScopedHead, ShadowPass, TrainingJob
from classifier.synth import drifted_sample, vehicle_sample
from reviews.models import DatasetExport
from reviews.services.retrain import (
    RetrainError,
    left_behind,
    new_labels,
    retrain_from_reviews,
    retrain_nightly,
    retrain_tasks,
)
from tests.classifier.test_features import classify, register_starter, store
from tests.factories import SitemapFactory, UserFactory
from tests.reviews.export_helpers import label, show

pytestmark = pytest.mark.django_db

SIZE = (320, 240)


@pytest.fixture
def labelled_world():
    """Two advertisers' live, production-classified images; the first one's images carry human labels of both
    tasks (the truth), the second one's none."""
    register_starter("detector")
    register_starter("vehicle")
    drifted, steady = SitemapFactory(), SitemapFactory()
    samples = [(drifted, drifted_sample(i, size=SIZE)) for i in range(40)]
    samples += [(steady, vehicle_sample(500 + i, size=SIZE)) for i in range(12)]
    assets = [store(sample.image) for _, sample in samples]
    classify(assets)
    for (sitemap, sample), asset in zip(samples, assets, strict=True):
        placement = show(sitemap, asset)
        if sitemap is drifted:
            label(placement, sample.image_type, task="image_type")
            label(placement, sample.color, task="color")
    UserFactory(is_staff=True, email="reviewer@example.com")
    return drifted, steady


def test_both_tasks_are_retrained_from_reviews_and_staff_get_the_comparison(labelled_world, settings):
    settings.SITE_URL = "https://tags.example.com"
    assert (new_labels(task="image_type"), new_labels(task="color")) == (40, 40)

    done, failed = retrain_tasks(tasks=["image_type", "color"])

    assert failed == []
    assert [item.task for item in done] == ["image_type", "color"]
    for item in done:
        assert item.export.status == DatasetExport.Status.FROZEN
        assert item.export.used_for_training_at is not None
        assert item.job.status == TrainingJob.Status.SUCCEEDED
        assert item.best is not None
        assert item.best.pk == item.job.result["best"]
        assert item.best.status == ModelVersion.Status.CANDIDATE  # promotion stays a human click
        assert item.shadow is not None
        assert item.shadow.status == ShadowPass.Status.SUCCEEDED
    assert set(ModelHead.objects.filter(is_active=True).values_list("model_version__status", flat=True)) == {"active"}
    # The labels are used: the next proposal waits for new ones.
    assert (new_labels(task="image_type"), new_labels(task="color")) == (0, 0)
    with pytest.raises(RetrainError, match="no new human labels"):
        retrain_from_reviews(task="color")

    [message] = mail.outbox
    assert message.to == ["reviewer@example.com"]
    assert "image_type, color" in message.subject
    for item in done:
        assert f"best candidate {item.best.name}" in message.body
        assert f"https://tags.example.com/staff/models/{item.task}/" in message.body


def test_the_nightly_job_waits_for_enough_new_labels(labelled_world, settings):
    settings.RETRAIN_MIN_NEW_LABELS = 41  # one more than there are

    assert retrain_nightly() == ([], [])
    assert not TrainingJob.objects.exists()
    assert not DatasetExport.objects.exists()
    assert not mail.outbox

    settings.RETRAIN_MIN_NEW_LABELS = 40
    done, failed = retrain_nightly()
    assert ([item.task for item in done], failed) == (["image_type", "color"], [])


def test_the_nightly_job_is_on_beats_schedule():
    row = PeriodicTask.objects.get(task="reviews.retrain_nightly")
    assert row.enabled
    assert row.crontab is not None


def test_an_unknown_task_is_refused_in_one_line():
    with pytest.raises(RetrainError, match="unknown task 'colour'"):
        retrain_from_reviews(task="colour")


def test_retrain_from_reviews_is_one_click_for_both_tasks(
    labelled_world, client, eager_celery, django_capture_on_commit_callbacks
):
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    page = client.get("/staff/models/color/").content.decode()
    assert "Retrain from reviews" in page
    assert "image_type 40, color 40" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/staff/models/retrain/", {"task": "color"}, follow=True)

    assert "Retraining image_type (40 new labels) and color (40 new labels)" in response.content.decode()
    jobs = TrainingJob.objects.order_by("pk")
    assert [(job.task, job.status, job.created_by) for job in jobs] == [
        ("image_type", "succeeded", staff),
        ("color", "succeeded", staff),
    ]
    assert ShadowPass.objects.filter(status=ShadowPass.Status.SUCCEEDED).count() == 2
    assert len(mail.outbox) == 1


def test_retrain_with_no_new_label_says_so(client):
    client.force_login(UserFactory(is_staff=True))
    response = client.post("/staff/models/retrain/", {"task": "image_type"}, follow=True)
    assert "No new human labels since the last training" in response.content.decode()
    assert not TrainingJob.objects.exists()


def test_retrain_is_staff_only(client):
    client.force_login(UserFactory(is_staff=False))
    assert client.post("/staff/models/retrain/", {"task": "image_type"}).status_code in {403, 404}
    assert not TrainingJob.objects.exists()


def test_an_advertiser_the_global_candidates_leave_behind_gets_heads_of_its_own(labelled_world, settings):
    settings.RETRAIN_SCOPED_BELOW = 1.01  # whatever the global candidates reach, the drifted advertiser is "behind"
    settings.RETRAIN_SCOPED_MIN_TEST = 1
    drifted, _steady = labelled_world

    item = retrain_from_reviews(task="image_type")

    [proposal] = item.scoped
    assert proposal.advertiser == drifted.advertiser.slug
    assert proposal.job.advertiser == drifted.advertiser
    assert proposal.job.result["trained_for"] == [drifted.advertiser.slug]
    assert proposal.best is not None
    assert proposal.best.advertiser == drifted.advertiser
    assert proposal.shadow is not None
    assert proposal.shadow.status == ShadowPass.Status.SUCCEEDED
    assert proposal.after is not None
    assert f"{drifted.advertiser.slug}: a head of its own, {proposal.best.name}" in item.summary
    assert not ScopedHead.objects.exists()  # promotion stays a human click

    settings.RETRAIN_SCOPED_BELOW = 0  # off
    assert left_behind(item.job) == []
