"""The reviews API routes, included under api/ (after catalog's, whose runs/<id>/ and
sitemaps/<id>/runs/ they leave alone)."""

from django.urls import path

from .apis import (
    FixRevertApi,
    ImageDetailApi,
    ImageFixCreateApi,
    ImageHistoryApi,
    RunListApi,
    SitemapImageListApi,
    SitemapListApi,
)
from .export_apis import ExportCreateApi, ExportDetailApi

app_name = "reviews_api"

urlpatterns = [
    path("sitemaps/", SitemapListApi.as_view(), name="sitemap-list"),
    path("sitemaps/<int:sitemap_id>/images/", SitemapImageListApi.as_view(), name="sitemap-images"),
    path("images/<int:image_id>/", ImageDetailApi.as_view(), name="image-detail"),
    path("images/<int:image_id>/history/", ImageHistoryApi.as_view(), name="image-history"),
    path("images/<int:image_id>/fixes/", ImageFixCreateApi.as_view(), name="image-fix-create"),
    path("fixes/<int:fix_id>/revert/", FixRevertApi.as_view(), name="fix-revert"),
    path("runs/", RunListApi.as_view(), name="run-list"),
    path("exports/", ExportCreateApi.as_view(), name="export-create"),
    path("exports/<int:export_id>/", ExportDetailApi.as_view(), name="export-detail"),
]
