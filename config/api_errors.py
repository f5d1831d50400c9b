"""Every API error is JSON: domain errors (core.errors.ApplicationError) from DRF's views, and whatever else answers
an error under /api/ (a 500, a body over the request cap, a 404 of no route), through one body shape:
`{"detail": message, "code": code, ...extra}`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.response import Response
from rest_framework.views import exception_handler

from core.errors import ApplicationError


def error_body(exc: ApplicationError) -> dict[str, Any]:
    """The JSON body of a domain error."""
    return {"detail": exc.message, "code": exc.code, **exc.extra}


def error_headers(exc: ApplicationError) -> dict[str, str]:
    return {} if exc.http_retry_after is None else {"Retry-After": str(exc.http_retry_after)}


class BodyTooLarge(ApplicationError):
    """A request body over its bound (the request cap, or the feed's FEED_MAX_BYTES)."""

    code = "body_too_large"
    http_status = 413


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: a domain error answers its status and body; DRF's own errors answer as DRF says."""
    if isinstance(exc, RequestDataTooBig):
        exc = BodyTooLarge(f"the request body is larger than the {_megabytes()} this endpoint takes")
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc), status=exc.http_status, headers=error_headers(exc))
    return exception_handler(exc, context)


def _megabytes() -> str:
    return f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE / 1024 / 1024:g} MB"


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def api_json_response(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """An error answer under /api/ that is not JSON yet (Django's 400, 403, 404, 405, 413 or 500 page) as JSON with
    the same status and headers, so an API client never parses HTML."""
    content_type = response.get("Content-Type", "")
    if response.status_code < 400 or content_type.startswith("application/json") or response.streaming:
        return response
    reason = response.reason_phrase or "Error"
    detail = "Server error: the failure is logged." if response.status_code >= 500 else f"{reason}."
    json = JsonResponse({"detail": detail, "code": reason.lower().replace(" ", "_")}, status=response.status_code)
    for header, value in response.items():
        if header.lower() not in ("content-type", "content-length"):
            json[header] = value
    json.cookies = response.cookies
    return json
