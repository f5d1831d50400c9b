from django.urls import path

from .apis import FeedSchemaApi, RunCancelApi, RunDetailApi, RunStartApi

app_name = "catalog"

urlpatterns = [
    path("sitemaps/<int:sitemap_id>/runs/", RunStartApi.as_view(), name="sitemap-run-start"),
    path("runs/<int:run_id>/", RunDetailApi.as_view(), name="run-detail"),
    path("runs/<int:run_id>/cancel/", RunCancelApi.as_view(), name="run-cancel"),
    path("feed-schema/", FeedSchemaApi.as_view(), name="feed-schema"),
]
