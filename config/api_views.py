"""The API's own views outside the apps: a JSON 404 under /api/, and the docs page."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularSwaggerSplitView


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404: under /api/ a JSON error like every other API error (a path that matches no route, such as
    /api/images/abc/); elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


class ApiDocsView(SpectacularSwaggerSplitView):
    """The Swagger UI with its start script served as a file, not inline, so the pages' CSP (script-src 'self')
    holds; OPTIONS answers which methods are allowed instead of rendering the page's template without one."""

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:  # type: ignore[override]
        return HttpResponse(headers={"Allow": ", ".join(self.allowed_methods), "Content-Length": "0"})
