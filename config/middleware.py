"""One error design on every screen and under /api/ (see core.errors):

- a domain error (ApplicationError) that escapes a screen's view becomes a message: on a form's POST, the page it
  came from with the message on top; otherwise a page (or, for htmx, a fragment) with the message and the error's
  4xx status, instead of a 500;
- under /api/, every error answer is JSON (DRF's views answer their own; this covers Django's 404, 500 and 400
  pages and anything outside DRF);
- a NUL character in the path, a query parameter or a form field is refused with a 400 before any view runs: no text
  column can store one (PostgreSQL refuses it with a DataError), so no valid input holds one.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme

from config.api_errors import api_json_response, error_body, error_headers, is_api
from core.errors import ApplicationError

_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class NulCharacter(ApplicationError):
    code = "nul_character"


def nul_refusal(request: HttpRequest) -> NulCharacter | None:
    """Why the request is refused for a NUL character, or None. Form fields are checked on screens only: DRF's
    fields refuse NUL themselves, and an API body is not always a form."""
    if "\x00" in request.path:
        return NulCharacter("the address holds a NUL character (%00): remove it")
    fields = [request.GET]
    if request.method == "POST" and not is_api(request) and request.content_type in _FORMS:
        fields.append(request.POST)
    for params in fields:
        for name, values in params.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                where = "query parameter" if params is request.GET else "form field"
                return NulCharacter(f"the {where} {name.replace(chr(0), '')!r} holds a NUL character (%00): remove it")
    return None


def error_response(request: HttpRequest, exc: ApplicationError) -> HttpResponse:
    """The answer to a domain error: JSON under /api/; on the screens the page the form came from with the message,
    or the message with the error's status."""
    if is_api(request):
        return JsonResponse(error_body(exc), status=exc.http_status, headers=error_headers(exc))
    if getattr(request, "htmx", False):
        return HttpResponse(format_html('<p class="failed">{}</p>', exc.message), status=exc.http_status)
    back = request.headers.get("Referer", "")
    if request.method == "POST" and url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        messages.error(request, exc.message)
        return HttpResponseRedirect(back)
    response = render(
        request, "error.html", {"message": exc.message, "status": exc.http_status}, status=exc.http_status
    )
    for header, value in error_headers(exc).items():
        response[header] = value
    return response


class ErrorMiddleware:
    """Place after MessageMiddleware (a refusal on a screen is a message)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = nul_refusal(request)
        response = self.get_response(request) if refusal is None else error_response(request, refusal)
        return api_json_response(request, response) if is_api(request) else response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, ApplicationError):
            return error_response(request, exception)
        return None
