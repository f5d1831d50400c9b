"""What each failure reason means, in one sentence a reviewer or an advertiser understands, and what to do about it.

A placement that failed (Placement.failure_reason) and a Run's counts (Run.failure_reasons) keep a short stable code:
`timeout`, `http_404`, `too_many_pixels`. Screens and the API show the sentence and the action; staff also see the
code. Every code the fetch, the image checks and the classify step can write has its entry here
(tests/catalog/test_failures.py reads the code base for them). Pure Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    code: str
    sentence: str  # what happened
    action: str  # what to do about it

    def __str__(self) -> str:
        return f"{self.sentence} {self.action}"


_SITE = "Check the image on the site; the next Run tries it again."
_FIX_URL = "Fix the image URL in the inventory; the next Run picks it up."

FAILURES: dict[str, tuple[str, str]] = {
    # The fetch (catalog.fetching)
    "bad_url": ("The image URL is not a valid web address.", _FIX_URL),
    "unsupported_scheme": ("The image URL is not an http or https address.", _FIX_URL),
    "blocked_address": (
        "The image URL points at a private or local network address, which we never fetch.",
        "Serve the image from a public address.",
    ),
    "dns_error": ("The image's host name does not exist, or could not be looked up.", _FIX_URL),
    "connect_error": ("The image's server could not be reached.", _SITE),
    "tls_error": ("The image's server has a broken or invalid HTTPS certificate.", "Fix the site's certificate."),
    "timeout": ("The image's server took too long to answer.", _SITE),
    "deadline": ("The image took too long to download.", "Serve smaller files, or a faster server."),
    "protocol_error": ("The image's server sent an answer that is not valid HTTP.", _SITE),
    "too_large": ("The image file is bigger than we download.", "Serve a smaller file (a web-sized JPEG)."),
    "too_many_redirects": ("The image URL redirects too many times.", _FIX_URL),
    "robots_disallowed": (
        "The site's robots.txt forbids fetching this image.",
        "Allow our crawler in robots.txt, or leave the image out.",
    ),
    "unexpected_304": (
        "The server said the image had not changed, but we hold no copy of it.",
        "Nothing: the next Run downloads it again.",
    ),
    # The image checks (catalog.imaging)
    "not_image": ("The URL answers with something that is not an image (a web page, say).", _FIX_URL),
    "corrupt_image": ("The image file is damaged and cannot be read.", "Upload the image again."),
    "format_not_allowed": ("The image is in a format we do not read.", "Use JPEG, PNG or WebP."),
    "too_many_pixels": ("The image has more pixels than we accept.", "Serve a smaller image (a few megapixels)."),
    # The Run and the models
    "classification_failed": (
        "The model could not tag this image.",
        "Tag it by hand; staff can see the model's error on the image page.",
    ),
    "internal_error": ("Something went wrong on our side.", "Nothing to do: staff are told, and the next Run retries."),
}

_HTTP = re.compile(r"http_(\d{3})")
_HTTP_STATUS: dict[int, tuple[str, str]] = {
    401: ("The image's server asks for a login.", "Make the image public."),
    403: ("The image's server refused to send it.", "Make the image public, or allow our crawler."),
    404: ("The image is not on the site any more (404 Not Found).", _FIX_URL),
    410: ("The image was removed from the site (410 Gone).", "Remove it from the inventory."),
    429: ("The image's server said we asked too often.", "Nothing: the next Run asks more slowly."),
}


def failure(code: str) -> Failure:
    """The sentence and the action for a failure code; an unknown code still gets a sentence (and keeps its code)."""
    if code in FAILURES:
        return Failure(code, *FAILURES[code])
    if match := _HTTP.fullmatch(code):
        status = int(match.group(1))
        if status in _HTTP_STATUS:
            return Failure(code, *_HTTP_STATUS[status])
        if status >= 500:
            return Failure(code, f"The image's server had an error (HTTP {status}).", _SITE)
        return Failure(code, f"The image's server refused the request (HTTP {status}).", _FIX_URL)
    return Failure(code, "The image could not be brought in.", _SITE)
