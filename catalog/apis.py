"""The catalog's API: the scraper's "scrape finished" call and Run status."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from .inventory.feed import FEED_FORMAT, FEED_SCHEMA
from .models import Run
from .parsers import FeedParser
from .selectors import runs_visible_to, sitemaps_visible_to, user_can_edit
from .services.runs import RunError, run_cancel, run_start


class RunOutputSerializer(serializers.ModelSerializer):
    run = serializers.IntegerField(source="pk")
    sitemap = serializers.IntegerField(source="sitemap_id")
    duration_seconds = serializers.FloatField(allow_null=True)

    class Meta:
        model = Run
        fields = [
            "run", "sitemap", "status", "step", "trigger", "listings", "urls", "not_modified", "cache_hits",
            "downloaded", "failed", "classified", "failure_reasons", "source_errors", "source_warnings", "error",
            "health_flags",
            "created_at", "started_at", "finished_at", "duration_seconds",
        ]  # fmt: skip


class RunStartApi(APIView):
    """Starts a Run of a sitemap (the scraper calls this when a scrape finishes).

    For a scrape-feed sitemap the request body is the feed document (see the README), raw or gzipped
    (`Content-Encoding: gzip`), up to FEED_MAX_BYTES uncompressed. Answers 202 with the Run, 409 when the sitemap
    already has a Run under way or the sitemap cannot take this Run (a feed document for a sitemap that is not a
    feed, none for a feed without a URL, a URL that is never fetched), 400 with every problem of an invalid feed, 413
    for a feed over the bound, 403 for a viewer of the advertiser (staff and editors start Runs).
    """

    # A form body (even an empty one, as a form's POST sends) is read as before; JSON is the feed's own reader's.
    parser_classes = [FeedParser, FormParser, MultiPartParser]

    class OutputSerializer(serializers.Serializer):
        run = serializers.IntegerField()
        status = serializers.CharField()
        url = serializers.URLField()

    @extend_schema(
        request={"application/json": {"type": "object", "description": "The scrape feed document (feed sitemaps)"}},
        parameters=[OpenApiParameter("trigger", str, enum=["scrape", "api"], description="Default: scrape")],
        responses={
            202: OutputSerializer,
            400: OpenApiResponse(description="An invalid feed document (`errors` lists every problem)."),
            413: OpenApiResponse(description="The feed is larger than FEED_MAX_BYTES uncompressed."),
            403: OpenApiResponse(description="The user is a viewer of this advertiser."),
            409: OpenApiResponse(
                description="The sitemap has a Run under way (`active_run`; Retry-After says when), or cannot take "
                "this Run: a feed document for a sitemap that is not a feed, none for a feed without a URL, a URL "
                "that is never fetched."
            ),
        },
    )
    def post(self, request: Request, sitemap_id: int) -> Response:
        sitemap = get_object_or_404(sitemaps_visible_to(request.user), pk=sitemap_id)
        if not user_can_edit(request.user, sitemap.advertiser_id):
            raise PermissionDenied("only editors of this advertiser may start a Run: your role is viewer")
        document = request.data if isinstance(request.data, dict) and request.data else None
        if document is not None and sitemap.kind != sitemap.Kind.FEED:
            raise RunError(f"sitemap {sitemap.pk} is not a scrape feed: only a feed sitemap takes a feed document")
        trigger = Run.Trigger.API if request.query_params.get("trigger") == "api" else Run.Trigger.SCRAPE
        run = run_start(sitemap=sitemap, trigger=trigger, user=request.user, feed_document=document)
        url = reverse("catalog:run-detail", args=[run.pk], request=request)
        return Response(self.OutputSerializer({"run": run.pk, "status": run.status, "url": url}).data, status=202)


class RunDetailApi(APIView):
    """A Run's status and counters."""

    @extend_schema(responses=RunOutputSerializer)
    def get(self, request: Request, run_id: int) -> Response:
        run = get_object_or_404(runs_visible_to(request.user), pk=run_id)
        return Response(RunOutputSerializer(run).data, status=status.HTTP_200_OK)


class RunCancelApi(APIView):
    """Cancels a queued or running Run: it fails with the error "cancelled" and its sitemap is free for the next Run,
    which carries on from what this one brought in. Staff, or an editor of the advertiser (its token); a viewer
    gets 403. Answers the Run; 409 when it has already finished."""

    @extend_schema(
        request=None,
        responses={
            200: RunOutputSerializer,
            409: OpenApiResponse(
                description="The Run has already finished: only a queued or running Run is cancelled."
            ),
            403: OpenApiResponse(description="The user is a viewer of this advertiser."),
        },
    )
    def post(self, request: Request, run_id: int) -> Response:
        run = get_object_or_404(runs_visible_to(request.user), pk=run_id)
        if not user_can_edit(request.user, run.sitemap.advertiser_id):
            raise PermissionDenied("only editors of this advertiser may cancel a Run: your role is viewer")
        run = run_cancel(run_id=run.pk)
        return Response(RunOutputSerializer(run).data, status=status.HTTP_200_OK)


class FeedSchemaApi(APIView):
    """The scrape feed's JSON Schema (draft 2020-12), so that a scraper can validate a feed before it posts it. What a
    schema cannot say (absolute http(s) URLs, unique external ids, a finished_at that parses, storable strings under
    unknown keys) the POST checks after it; its 400 lists every problem with its JSON path."""

    @extend_schema(
        responses={200: OpenApiResponse(response=OpenApiTypes.OBJECT, description=f"The JSON Schema of {FEED_FORMAT}.")}
    )
    def get(self, request: Request) -> Response:
        return Response(FEED_SCHEMA)
