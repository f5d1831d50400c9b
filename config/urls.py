from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView

from config.api_views import ApiDocsView
from reviews.media_views import media_file, signed_media_file

urlpatterns = [
    path("", include("reviews.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("catalog.urls")),
    path("api/", include("reviews.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", ApiDocsView.as_view(url_name="schema"), name="api-docs"),
]
handler404 = "config.api_views.not_found"
# Stored files, for logged-in users within their scope (reviews.media_views): local storage's url() points here;
# S3's url() is presigned already, and this view redirects to such a URL.
_MEDIA_PREFIX = settings.MEDIA_URL.strip("/") if settings.MEDIA_URL.startswith("/") else "media"
urlpatterns += [
    # Before the catch-all path below: the API's links (reviews.media_views.signed_media_url) need no session.
    path(f"{_MEDIA_PREFIX}/signed/<str:token>", signed_media_file, name="media-signed"),
    path(f"{_MEDIA_PREFIX}/<path:name>", media_file, name="media"),
]
# Browsers ask for /favicon.ico on every page that names none (the admin, the API's JSON): the file the screens link to.
urlpatterns += [
    path(
        "favicon.ico",
        require_safe(cache_control(max_age=24 * 3600, public=True)(serve)),
        {"path": "favicon.ico", "document_root": settings.BASE_DIR / "static"},
        name="favicon",
    )
]
