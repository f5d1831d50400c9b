"""A process keeps one ONNX session per model file: an id that comes back for another file (SQLite gives a rolled-back
id again) must not hand out the old file's session."""

import copy

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
