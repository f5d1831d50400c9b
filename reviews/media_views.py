"""Stored files (originals, thumbnails, occlusion heatmaps, exports, model files) for logged-in users within their
scope: streamed from local storage, or a redirect to a short-lived presigned URL of remote storage (S3). A file
outside the viewer's scope is a 404, as if it did not exist."""

from __future__ import annotations

import mimetypes

from django.contrib.auth.decorators import login_required
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage, default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe

from .selectors import media_visible_to

# Browsers may keep a file (or the redirect to its presigned URL) this long: less than a presigned URL lives.
MEDIA_MAX_AGE = 60
_PICTURES = ("originals/", "thumbnails/", "occlusion/")


@require_safe
@login_required
def media_file(request: HttpRequest, name: str) -> HttpResponseBase:
    if not media_visible_to(request.user, name):
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
