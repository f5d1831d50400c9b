"""The one exception type every fetch failure becomes."""

from __future__ import annotations

from core.errors import ApplicationError

# Reasons a caller may retry later with a fair chance of success.
TRANSIENT_REASONS = frozenset({"timeout", "connect_error", "protocol_error"})


class FetchError(ApplicationError):
    """A fetch that was refused or failed.

    ``reason`` is a stable short code (``blocked_address``, ``bad_url``, ``unsupported_scheme``,
    ``dns_error``, ``connect_error``, ``protocol_error``, ``timeout``, ``deadline``, ``too_large``,
    ``too_many_redirects``, ``http_error``, ``not_image``, ``tls_error``); ``str(error)`` is one line
    saying what happened to which URL.
    """

    code = "fetch_failed"
    http_status = 502  # a refusal (a blocked or malformed URL) is the caller's: 400

    def __init__(
        self,
        reason: str,
        url: str,
        detail: str,
        *,
        status: int | None = None,
        transient: bool | None = None,
        upstream_retry_after: float | None = None,
    ) -> None:
        self.reason = reason
        self.url = url
        self.detail = detail
        self.status = status
        if transient is None:
            transient = reason in TRANSIENT_REASONS or (
                reason == "http_error" and status is not None and (status == 429 or status >= 500)
            )
        self.transient = transient
        # Seconds the server asked us to wait (Retry-After of a 429 or 503), if it said.
        self.upstream_retry_after = upstream_retry_after
        if reason in _REFUSALS:
            self.http_status = 400
        super().__init__(f"{'refused' if reason in _REFUSALS else 'failed'} {url}: {detail}")

    def __reduce__(self) -> tuple[object, ...]:
        # Keeps the error picklable (Celery results, process pools) despite the keyword arguments.
        return (_rebuild, (self.reason, self.url, self.detail, self.status, self.transient, self.upstream_retry_after))


_REFUSALS = frozenset({"blocked_address", "bad_url", "unsupported_scheme", "too_large", "not_image"})


def _rebuild(
    reason: str, url: str, detail: str, status: int | None, transient: bool, upstream_retry_after: float | None = None
) -> FetchError:
    return FetchError(
        reason, url, detail, status=status, transient=transient, upstream_retry_after=upstream_retry_after
    )
