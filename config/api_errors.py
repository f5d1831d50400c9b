"""Turns domain errors into clear JSON errors for every API view."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler

from catalog.inventory import FeedInvalid, InventoryRefused
from catalog.services.runs import RunAlreadyActive, RunError
from reviews.exports.services import ExportError
from reviews.services.fixes import FixError


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RunAlreadyActive):
        return Response({"detail": str(exc), "active_run": exc.active.pk}, status=409, headers={"Retry-After": "60"})
    if isinstance(exc, FeedInvalid):
        return Response({"detail": str(exc), "errors": exc.errors}, status=400)
    if isinstance(exc, RunError | InventoryRefused | FixError | ExportError):
        return Response({"detail": str(exc)}, status=400)
    return exception_handler(exc, context)
