"""A process keeps one ONNX session per model file: an id that comes back for another file (SQLite gives a rolled-back
id again) must not hand out the old file's session."""

import copy
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from classifier.services.inference import _session_for, forget_sessions


@pytest.mark.django_db
def test_a_session_is_kept_per_file_not_per_id(register_tiny):
    forget_sessions()
    first = register_tiny(name="first", activate=False)
    second = register_tiny(name="second", activate=False, size=(16, 16))
    assert first.sha256 != second.sha256
    same_id_other_file = copy.copy(second)
    same_id_other_file.pk = first.pk

    kept = _session_for(first)
    other = _session_for(same_id_other_file)

    assert _session_for(first) is kept
    assert other is not kept
    assert other.get_inputs()[0].shape != kept.get_inputs()[0].shape
    forget_sessions()


@pytest.mark.django_db
def test_a_feature_extractor_is_kept_per_file_not_per_id():
    """The same for the features a candidate is fitted on: another file under a returning id gets its own session."""
    from classifier.services.features import extractor_for, forget_extractors
    from classifier.services.registry import model_register
    from tests.classifier.onnx_builders import embedding_classifier, region_contract

    forget_extractors()
    first, second = (
        model_register(data=embedding_classifier(seed=seed), contract=region_contract(size=16, name=f"e{seed}"))
        for seed in (1, 2)
    )
    same_id_other_file = copy.copy(second)
    same_id_other_file.pk = first.pk
    pixels = np.full((1, 16, 16, 3), 0.5, dtype=np.float32)

    kept = extractor_for(version=first, output="image_type")
    other = extractor_for(version=same_id_other_file, output="image_type")

    assert extractor_for(version=first, output="image_type") is kept
    assert other is not kept
    assert not np.allclose(kept.features(pixels), other.features(pixels))
    forget_extractors()


@pytest.mark.django_db
def test_the_fetch_processes_share_the_sessions_their_parent_made_before_the_fork(register_tiny):
    """A worker's Run that classifies in its fetch processes makes the sessions once, before it forks them: the children
    use those (copy-on-write, one set of sessions for the tree), and answer as sessions made in the child do."""
    from classifier.preprocess import decode
    from classifier.services.inference import active_models, classify_decoded, load_models_cached
    from classifier.services.pipeline import FetchClassifyStream
    from tests.classifier.test_run_streaming import jpeg

    forget_sessions()
    register_tiny()

    class RunOfOne:
        pk = 1

    stream = FetchClassifyStream(run=RunOfOne(), active=active_models(), decode_again=False)
    stream.before_fork()
    made = load_models_cached(stream.active)
    parent_labels = labels_of(classify_decoded(decode(jpeg((20, 40, 230)), min_size=8), stream.active))
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a fetch process does first, then one image
        try:
            stream.child_started()
            same = load_models_cached(stream.active) is made
            labels = labels_of(classify_decoded(decode(jpeg((20, 40, 230)), min_size=8), stream.active))
            os.write(writing, pickle.dumps((same, labels)))
        finally:
            os._exit(0)
    os.close(writing)
    os.waitpid(pid, 0)
    with os.fdopen(reading, "rb") as answer:
        same, labels = pickle.loads(answer.read())  # noqa: S301 - our own child's answer
    assert same, "the fetch process made its own sessions"
    assert labels == parent_labels
    assert labels["color"] == "blue"
    forget_sessions()


def test_a_tagging_worker_does_not_import_what_only_training_needs():
    """scipy (~50 MB in every process of a worker's tree) is imported by the training code that fits, not by the
    modules a worker loads at start: the tagging worker's memory bound counts it (tests/integration/
    test_worker_memory)."""
    code = (
        "import sys, django; django.setup(); from config.celery_app import app; "
        "app.loader.import_default_modules(); import config.urls; "
        # ...nor what keys a new image (the pHash's DCT is OpenCV's: imagehash's imports scipy in each fetch process)
        "from catalog.imaging import inspect_image; from catalog.inventory_server import make_inventory_images; "
        "inspect_image(make_inventory_images(1, seed=1)[0]); "
        "print(sorted(m for m in ('scipy', 'torch', 'sklearn') if m in sys.modules))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    answer = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert answer.stdout.strip().splitlines()[-1] == "[]", answer.stderr[-2000:]


def labels_of(result) -> dict[str, str]:
    return {task: head.label for task, head in result.results.items()}
