"""Every failure code the code base can write has a sentence and an action (catalog.failures), read from the source,
so that a new code cannot reach a screen as a bare code."""

import re
from pathlib import Path

import pytest

from catalog.failures import FAILURES, failure

ROOT = Path(__file__).resolve().parents[2]
# Where codes are written: FetchError("code", ...), ImageRefused("code", ...), UrlResult(..., reason="code"), and
# the Run's step failures ({"code": n}).
WRITERS = [
    re.compile(r'FetchError\(\s*"([a-z_0-9]+)"'),
    re.compile(r'ImageRefused\(\s*"([a-z_0-9]+)"'),
    re.compile(r'reason="([a-z_0-9]+)"'),
    re.compile(r'step_failures=\{"([a-z_0-9]+)"'),
]


def written_codes() -> set[str]:
    codes: set[str] = set()
    for folder in ("catalog", "classifier"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for pattern in WRITERS:
                codes.update(pattern.findall(text))
    return codes - {"http_error"}  # written as http_<status> (catalog.services.image_fetch._reason)


def test_every_code_the_code_base_writes_has_a_sentence_and_an_action():
    codes = written_codes()
    assert {"timeout", "too_many_pixels", "internal_error", "classification_failed"} <= codes  # the reader works
    assert sorted(codes - set(FAILURES)) == []


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("http_404", "not on the site any more"),
        ("http_503", "server had an error (HTTP 503)"),
        ("http_418", "refused the request (HTTP 418)"),
        ("too_many_pixels", "more pixels than we accept"),
        ("something_new", "could not be brought in"),
    ],
)
def test_a_code_reads_as_a_sentence_with_what_to_do(code, words):
    explained = failure(code)
    assert words in explained.sentence
    assert explained.sentence.endswith(".")
    assert explained.action.endswith(".")
    assert explained.code == code
