"""The one guard of the staff screens.

A logged-in user who is not staff (an advertiser's editor or viewer) gets 403 on every staff screen, the loop's
included; an anonymous visitor logs in first. 403, not 404: the staff screens' addresses are no secret (the README
lists them), so hiding them hides nothing, and "you may not" tells the advertiser's user the truth instead of a
broken link. Data is another matter: an advertiser's user asking for another advertiser's image or Run gets 404
(catalog.selectors' scopes), so that nobody learns what exists outside their scope.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

View = TypeVar("View", bound=Callable[..., HttpResponse])


def staff_required(view: View) -> View:
    """A staff screen: anonymous visitors log in first; a logged-in user who is not staff gets 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied("staff only")
        return view(request, *args, **kwargs)

    return login_required(wrapper)  # type: ignore[return-value]
