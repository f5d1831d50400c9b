"""Brute-force protection of the logins (django-axes)."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


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
