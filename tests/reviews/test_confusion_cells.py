"""Each count of the Models screen's confusion matrices opens the test images behind it (as FiftyOne's do): the
images a cell lists are exactly as many as it counts, for the baseline and every candidate, on a real training job."""

from __future__ import annotations

import re

import pytest

from classifier.models import ModelVersion
from reviews.services.retrain import retrain_from_reviews
from tests.factories import UserFactory
from tests.reviews.test_retrain import labelled_world  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def trained(labelled_world, client):  # noqa: F811 - the fixture
    client.force_login(UserFactory(is_staff=True))
    return retrain_from_reviews(task="image_type").job


def test_every_cell_lists_as_many_images_as_it_counts(trained, client):
    job = trained
    page = client.get(f"/staff/models/image_type/?job={job.pk}").content.decode()
    columns = [(job.result["baseline"]["model_version"], job.result["baseline"]["test"])]
    columns += [(c["model_version"], c["test"]) for c in job.result["candidates"]]
    for version_id, test in columns:
        url = f"/staff/jobs/training/{job.pk}/models/{version_id}/confusion/"
        labels = test["labels"]
        for i, true in enumerate(labels):
            for j, predicted in enumerate(labels):
                count = test["confusion"][i][j]
                cell = client.get(url, {"true": true, "predicted": predicted})
                assert cell.status_code == 200
                shown = re.findall(r'<figure class="sample" data-asset="(\d+)"', cell.content.decode())
                assert len(shown) == count, (version_id, true, predicted)
                if count:
                    assert f"{url}?true={true}&amp;predicted={predicted}" in page
        whole = client.get(url).content.decode()
        assert f"<strong>{test['n']}</strong> of the {test['n']} test images" in whole


def test_a_cell_refuses_what_is_not_the_jobs(trained, client):
    job = trained
    other = ModelVersion.objects.exclude(pk=job.parent_id).filter(training_job__isnull=True).first()
    url = f"/staff/jobs/training/{job.pk}/models/{job.parent_id}/confusion/"
    assert client.get(url, {"true": "Purple"}).status_code == 400
    assert client.get(url, {"predicted": "\x00"}).status_code == 400
    assert client.get(f"/staff/jobs/training/{job.pk}/models/{other.pk}/confusion/").status_code == 404
    assert client.get(f"/staff/jobs/training/{job.pk + 99}/models/{job.parent_id}/confusion/").status_code == 404


def test_a_cell_is_staff_only(trained, client):
    client.force_login(UserFactory(is_staff=False))
    response = client.get(f"/staff/jobs/training/{trained.pk}/models/{trained.parent_id}/confusion/")
    assert response.status_code in {403, 404}
    assert "figure" not in response.content.decode()
