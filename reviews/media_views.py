"""Stored files (originals, thumbnails, occlusion heatmaps, exports, model files) for logged-in users within their
scope: streamed from local storage, or a redirect to a short-lived presigned URL of remote storage (S3). A file
outside the viewer's scope is a 404, as if it did not exist.

API clients hold a token, not a session: the API's picture links are signed instead (`signed_media_url`), for the
user the answer was made for and for SIGNED_MEDIA_MAX_AGE seconds. Following one checks the scope again, for that
user, then serves the file as above: a link outlives neither its hour nor the user's access."""

from __future__ import annotations

import mimetypes

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage, default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe

from catalog.selectors import AnyUser

from .selectors import media_visible_to

# Browsers may keep a file (or the redirect to its presigned URL) this long: less than a presigned URL lives.
MEDIA_MAX_AGE = 60
# How long a signed link of an API answer can be followed: long enough to page through a sitemap and fetch its
# pictures, short enough that a leaked answer stops opening files within the hour.
SIGNED_MEDIA_MAX_AGE = 3600
_SIGNING_SALT = "reviews.media_views.signed"
_PICTURES = ("originals/", "thumbnails/", "occlusion/")


@require_safe
@login_required
def media_file(request: HttpRequest, name: str) -> HttpResponseBase:
    if not media_visible_to(request.user, name):
        raise Http404("no such file")
    return stored_file_response(name)


def signed_media_url(user: AnyUser, name: str) -> str:
    """A link to a stored file that works without a session, for SIGNED_MEDIA_MAX_AGE seconds, as `user` may see it."""
    token = signing.dumps({"u": user.pk, "n": name}, salt=_SIGNING_SALT, compress=True)
    return reverse("media-signed", args=[token])


@require_safe
def signed_media_file(request: HttpRequest, token: str) -> HttpResponseBase:
    """A signed link of an API answer: the file, if the link is genuine and fresh and its user may still see it; 404
    otherwise (a forged, altered or expired link says no more than a missing file)."""
    try:
        signed = signing.loads(token, salt=_SIGNING_SALT, max_age=SIGNED_MEDIA_MAX_AGE)
    except signing.BadSignature as exc:  # SignatureExpired included
        raise Http404("no such file") from exc
    user = get_user_model().objects.filter(pk=signed.get("u")).first()
    name = str(signed.get("n", ""))
    if user is None or not media_visible_to(user, name):
        raise Http404("no such file")
    return stored_file_response(name)


def stored_file_response(name: str) -> HttpResponseBase:
    """A stored file the caller has checked the viewer may see: streamed from local storage, or a redirect to its
    presigned URL (remote storage); a 404 when it is missing."""
    response: HttpResponseBase
    if isinstance(default_storage, FileSystemStorage):
        try:
            handle = default_storage.open(name, "rb")
        except (OSError, SuspiciousFileOperation) as exc:  # missing, a directory, or outside the media root
            raise Http404("no such file") from exc
        response = FileResponse(
            handle,
            content_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
            as_attachment=not name.startswith(_PICTURES),  # exports and model files download
        )
    else:
        response = HttpResponseRedirect(default_storage.url(name))  # presigned: AWS_QUERYSTRING_EXPIRE
    patch_cache_control(response, private=True, max_age=MEDIA_MAX_AGE)
    return response
