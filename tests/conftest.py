import json

import pytest

from classifier.services.registry import model_register
from tests.classifier.onnx_builders import classifier_contract, constant_detector, detector_contract, mean_classifier


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def eager_celery():
    """Celery runs a task in-process when it is sent, as a worker would run it."""
    from config.celery_app import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.fixture
def tiny_model(tmp_path):
    """A real ONNX classifier whose `color` head is the argmax of the channel means (red, green, blue)."""
    model, spec = tmp_path / "tiny.onnx", tmp_path / "tiny.json"
    model.write_bytes(mean_classifier())
    spec.write_text(json.dumps(classifier_contract()))
    return model, spec


@pytest.fixture
def register_tiny():
    def register(*, name="tiny", crop="none", activate=True, size=(8, 8), **kwargs):
        contract = classifier_contract(name=name, crop=crop, size=size)
        kwargs["size"] = size
        return model_register(data=mean_classifier(**kwargs), contract=contract, activate=activate)

    return register


@pytest.fixture
def register_detector():
    def register(output, *, margin=0.0, size=(32, 32)):
        contract = detector_contract(size=size, classes=["car"], vehicle_classes=[0], margin=margin)
        return model_register(data=constant_detector(output, size=size), contract=contract, activate=True)

    return register
