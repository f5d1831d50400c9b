"""A process keeps one ONNX session per model file: an id that comes back for another file (SQLite gives a rolled-back
id again) must not hand out the old file's session."""

import copy

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
