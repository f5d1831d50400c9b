"""Brute-force protection of the logins (django-axes)."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_cool_off, get_lockout_message
from django.conf import settings
from django.http import HttpRequest, HttpResponse


class LoginAttemptsBackend(AxesStandaloneBackend):
    """django-axes' lockout check for every login that comes with a request (the login page, the admin's).

    A call without a request (a management command or a test checking a password) is not an attempt from the
    network: Axes would refuse it outright, so it is left to the next backend."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    """django-axes' lockout answer (its message and status), with Retry-After: the cool-off, which every failed
    attempt starts again, so a client that waits that long is let in."""
    response = HttpResponse(get_lockout_message(), status=getattr(settings, "AXES_HTTP_RESPONSE_CODE", 429))
    cool_off = get_cool_off(request)
    if cool_off:
        response["Retry-After"] = str(max(1, int(cool_off.total_seconds())))
    return response
