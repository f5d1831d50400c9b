"""The one base of every domain error: a message for a person, a stable code for a program, and an HTTP status.

A service raises a subclass of ApplicationError when it refuses what it was asked; one handler per interface turns
it into an answer: JSON under /api/ (config.api_errors), a message on the screens (config.middleware), one line and
exit code 1 in management commands (config.commands). Views, the API and commands never list error types. Plain
Python, like the pure modules that raise these errors (catalog.inventory, catalog.fetching, classifier.contract).
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A refusal the caller can act on: ``str(error)`` says what went wrong and what to do, in one line.

    ``code`` is a stable short name for programs (class attribute; an instance may set its own), ``http_status``
    the status an HTTP answer carries (400 unless the subclass says otherwise), ``extra`` more fields for the API
    answer (the feed's problems, the Run under way), and ``http_retry_after`` seconds for a Retry-After header.
    """

    code: str = "invalid"
    http_status: int = 400
    http_retry_after: int | None = None

    @property
    def message(self) -> str:
        return str(self)

    @property
    def extra(self) -> dict[str, Any]:
        return {}
