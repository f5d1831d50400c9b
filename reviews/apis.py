"""The reviews API: sitemaps, their images with effective tags, an image's history, manual fixes, Runs.

An "image" is a Placement (an image URL as it appears in an advertiser's listing): its id makes the
advertiser unambiguous, and fixes are scoped per (advertiser, asset, task). Every read goes through a
visibility selector, so another advertiser's objects answer 404: never 403, never their data.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, cast

from django.contrib.auth.models import User
from django.core.validators import RegexValidator
from django.db.models import OuterRef, QuerySet, Subquery
from django.shortcuts import get_object_or_404
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import build_choice_field
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from catalog.apis import RunOutputSerializer
from catalog.failures import failure
from catalog.models import TASK_LABELS, Placement, Run, Sitemap, Task
from catalog.selectors import AnyUser, placements_visible_to, runs_visible_to, sitemaps_visible_to
from classifier.contract import VEHICLE_KINDS
from classifier.models import Classification
from config.api import NO_NUL_PATTERN
from config.api import Pagination as ApiPagination

from .grid import (
    MAX_CURSOR,
    SORTS,
    GridFilterError,
    GridFilters,
    Paging,
    decode_cursor,
    similar_param,
    sitemap_grid,
)
from .media_views import signed_media_url
from .models import ManualFix
from .selectors import EffectiveTag, Source, effective_tags, fixes_visible_to, user_can_fix, vehicle_kinds
from .services import manual_fix_create, manual_fix_revert

# A fix's note is kept forever (fixes are never deleted): a sentence or a paragraph, not a document.
NOTE_MAX_LENGTH = 2000
LABEL_MAX_LENGTH = 100
_REGEX_SPECIALS = frozenset("\\^$.|?*+()[]{}/-")


def label_pattern(labels: tuple[str, ...]) -> str:
    """A regular expression (Python's and ECMA-262's alike) of the labels as canonical_label reads them: any case,
    surrounding whitespace allowed; so the schema takes exactly the labels the service takes."""

    def spelled(label: str) -> str:
        return "".join(
            f"[{c.upper()}{c.lower()}]" if c.upper() != c.lower() else ("\\" + c if c in _REGEX_SPECIALS else c)
            for c in label
        )

    return r"^\s*(?:" + "|".join(spelled(label) for label in labels) + r")\s*$"


def fix_input_schema() -> dict[str, Any]:
    """The body of a fix: a task and one of that task's labels (TASK_LABELS), and a note."""
    return {
        "type": "object",
        "required": ["task", "label"],
        "properties": {
            "task": build_choice_field(serializers.ChoiceField(choices=Task.choices)),  # as every task field
            "label": {
                "type": "string",
                "maxLength": LABEL_MAX_LENGTH,
                "description": "One of the task's labels (case-insensitive).",
            },
            "note": {
                "type": "string",
                "maxLength": NOTE_MAX_LENGTH,
                "pattern": NO_NUL_PATTERN,
                "description": f"Why, for the image's history (at most {NOTE_MAX_LENGTH} characters: fixes are kept "
                "forever).",
            },
        },
        "oneOf": [
            # The task as a pattern, not a one-value enum: drf-spectacular's enum hook would merge those into one.
            {"properties": {"task": {"pattern": f"^{task}$"}, "label": {"pattern": label_pattern(labels)}}}
            for task, labels in TASK_LABELS.items()
        ],
    }


def _fix_source(user: AnyUser) -> str:
    return ManualFix.Source.API if user.is_staff else ManualFix.Source.ADVERTISER


def _acting_user(request: Request) -> User:
    # The IsAuthenticated default permission ran before any handler: the user is a real one.
    return cast(User, request.user)


def _require_fixer(user: AnyUser, advertiser_id: int) -> None:
    if not user_can_fix(user, advertiser_id):
        raise PermissionDenied("only editors of this advertiser may record or revert fixes: your role is viewer")


def legacy_tags(tags: dict[str, EffectiveTag]) -> dict[str, EffectiveTag]:
    """The old system's defaults, on request only: a failed or unknown image_type reads Placeholder, a failed
    or unknown color null. The source and reason still say what happened."""
    out = {}
    for task, tag in tags.items():
        if tag.source in (Source.FAILED, Source.UNKNOWN):
            tag = dataclasses.replace(tag, label="Placeholder" if task == Task.IMAGE_TYPE else None)
        out[task] = tag
    return out


# Serializers shared by several operations.


class ImageTagSerializer(serializers.Serializer):
    # The stubs type Field.label and Field.source as strings; these are fields named so.
    label = serializers.CharField(allow_null=True)  # type: ignore[assignment]
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=list(Source.ALL)
    )
    confidence = serializers.FloatField(allow_null=True)
    margin = serializers.FloatField(allow_null=True)
    model_version = serializers.IntegerField(
        source="model_version_id",
        allow_null=True,
        help_text="The model version that answered (source model): the active model, or the advertiser's scoped head.",
    )
    fixed_by = serializers.CharField(help_text="Who recorded the fix in effect (source fix).")
    fix_source = serializers.CharField(help_text="staff, advertiser, api or carried (source fix).")
    fix_id = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(help_text="Why there is no label (source failed or unknown).")


class ImageListingSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    external_id = serializers.CharField()
    url = serializers.URLField()
    title = serializers.CharField()


class ImageAssetSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    format = serializers.CharField()
    thumbnail = serializers.SerializerMethodField()
    original = serializers.SerializerMethodField()

    def _absolute(self, file: Any) -> str | None:
        """A link the API client can follow with no session: signed for the requesting user, for an hour."""
        if not file:
            return None
        request = self.context["request"]
        return request.build_absolute_uri(signed_media_url(request.user, file.name))

    @extend_schema_field(OpenApiTypes.URI)
    def get_thumbnail(self, asset: Any) -> str | None:
        return self._absolute(asset.thumbnail)

    @extend_schema_field(OpenApiTypes.URI)
    def get_original(self, asset: Any) -> str | None:
        return self._absolute(asset.original)


class ImageSerializer(serializers.Serializer):
    """A placement with its effective tag per task. Context: request, tags (from effective_tags), legacy."""

    id = serializers.IntegerField(source="pk")
    url = serializers.URLField()
    position = serializers.IntegerField()
    listing = ImageListingSerializer()
    asset = ImageAssetSerializer(allow_null=True, help_text="Null until the image is downloaded.")
    status = serializers.ChoiceField(choices=Placement.Status.choices)
    failure_reason = serializers.CharField(
        help_text="A short stable code (timeout, http_404, too_many_pixels); empty when none."
    )
    failure_message = serializers.SerializerMethodField(
        help_text="What the failure means, and what to do about it, in one or two sentences; empty when none."
    )
    vehicle_kind = serializers.SerializerMethodField()
    tags = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.STR)
    def get_failure_message(self, placement: Placement) -> str:
        return str(failure(placement.failure_reason)) if placement.failure_reason else ""

    @extend_schema_field(
        serializers.ChoiceField(
            choices=list(VEHICLE_KINDS),
            allow_null=True,
            help_text="The kind of vehicle the detector saw in the crop; null when its classes do not say.",
        )
    )
    def get_vehicle_kind(self, placement: Placement) -> str | None:
        return self.context.get("kinds", {}).get(placement.asset_id) or None

    @extend_schema_field(serializers.DictField(child=ImageTagSerializer(), help_text="Effective tag per task."))
    def get_tags(self, placement: Placement) -> dict[str, Any]:
        tags = self.context["tags"][placement.pk]
        if self.context.get("legacy"):
            tags = legacy_tags(tags)
        return {task: self._tag_output.to_representation(tag) for task, tag in tags.items()}

    @functools.cached_property
    def _tag_output(self) -> ImageTagSerializer:
        """One tag serializer for every tag of the page: a new one per tag deep-copies its fields each time (two
        thirds of a page's time at 500 images)."""
        return ImageTagSerializer()


class FixSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", allow_null=True, read_only=True)
    origin: serializers.PrimaryKeyRelatedField[ManualFix] = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The fix a carried fix was carried from."
    )
    reverts: serializers.PrimaryKeyRelatedField[ManualFix] = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The fix this one reverts."
    )
    confirmation = serializers.BooleanField(
        source="is_confirmation", read_only=True, help_text="A fix to the label already in effect: confirmed."
    )

    class Meta:
        model = ManualFix
        fields = [
            "id", "task", "old_label", "new_label", "withdraws", "source", "user", "created_at", "note", "origin",
            "reverts", "confirmation", "settles",
        ]  # fmt: skip
        read_only_fields = ["settles", "withdraws"]


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class PaginatedApi(APIView):
    """An APIView that pages its list with the project's default pagination (documented in the schema)."""

    pagination_class = cast("type[BasePagination]", api_settings.DEFAULT_PAGINATION_CLASS)

    def paginate(self, queryset: QuerySet[Any], request: Request) -> list[Any]:
        self.paginator = self.pagination_class()
        return list(self.paginator.paginate_queryset(queryset, request, view=self) or [])

    def paginated_response(self, data: Any) -> Response:
        return self.paginator.get_paginated_response(data)


# Operations.


class SitemapListApi(PaginatedApi):
    """The sitemaps the user may see (staff: all), each with its last Run."""

    class OutputSerializer(serializers.ModelSerializer):
        class LastRunSerializer(serializers.Serializer):
            id = serializers.IntegerField()
            status = serializers.CharField(help_text="The Run's status, as in RunOutput.")
            finished_at = serializers.DateTimeField(allow_null=True)

            class Meta:
                ref_name = "SitemapLastRun"

        advertiser = serializers.CharField(source="advertiser.slug", help_text="The advertiser's slug.")
        last_run = serializers.SerializerMethodField()

        class Meta:
            model = Sitemap
            ref_name = "SitemapOutput"
            fields = ["id", "advertiser", "name", "kind", "url", "schedule", "is_enabled", "tasks_enabled", "last_run"]

        @extend_schema_field(LastRunSerializer(allow_null=True))
        def get_last_run(self, sitemap: Any) -> dict[str, Any] | None:
            if sitemap.last_run_id is None:
                return None
            run = {"id": sitemap.last_run_id, "status": sitemap.last_run_status, "finished_at": sitemap.last_run_at}
            return self.LastRunSerializer(run).data

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        last = Run.objects.filter(sitemap=OuterRef("pk")).order_by("-created_at", "-id")
        sitemaps = sitemaps_visible_to(request.user).annotate(
            last_run_id=Subquery(last.values("pk")[:1]),
            last_run_status=Subquery(last.values("status")[:1]),
            last_run_at=Subquery(last.values("finished_at")[:1]),
        )
        page = self.paginate(sitemaps, request)
        return self.paginated_response(self.OutputSerializer(page, many=True).data)


@extend_schema_field({"type": "string", "pattern": NO_NUL_PATTERN})
class QueryTextField(serializers.CharField):
    """A text query parameter: optional, blank (no filter) allowed, a NUL character refused."""

    def __init__(self, **kwargs: Any) -> None:
        validators = [RegexValidator(NO_NUL_PATTERN, "holds a NUL character (%00): remove it")]
        super().__init__(required=False, allow_blank=True, validators=validators, **kwargs)


class LegacyQuerySerializer(serializers.Serializer):
    legacy = serializers.BooleanField(
        required=False,
        help_text="Present a failed or unknown image_type as Placeholder and color as null, as the old system did. "
        "The default output says what happened.",
    )

    def as_legacy(self) -> bool:
        return bool(self.validated_data.get("legacy"))


# Up to 50 ids of 1 to 18 digits (under 2**63), comma-separated: what reviews.grid.similar_param accepts.
SIMILAR_TO_PATTERN = r"^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17}){0,49}$"


class GridQuerySerializer(LegacyQuerySerializer):
    """The review grid's filters as the API takes them: a value that is none of the declared ones is a 400 that says
    so (the grid's screen falls back to its default instead)."""

    task = serializers.ChoiceField(
        choices=Task.values, required=False, help_text="The task the filters look at (image_type)."
    )
    label = QueryTextField(  # type: ignore[assignment]  # a field named label (see ImageTagSerializer)
        help_text="Effective label of the task (case-insensitive)."
    )
    source = serializers.ChoiceField(  # type: ignore[assignment]  # a field named source
        choices=list(Source.ALL), required=False, help_text="Where the effective label of the task comes from."
    )
    confidence_below = serializers.FloatField(
        required=False, min_value=0, max_value=1, help_text="Model tags under this confidence."
    )
    ambiguous = serializers.BooleanField(required=False, help_text="Model tags whose top-2 margin is small.")
    failed = serializers.BooleanField(required=False, help_text="Images whose tag for the task failed.")
    fixed = serializers.ChoiceField(
        choices=["yes", "no"], required=False, help_text="Images with (or without) any fix."
    )
    listing = QueryTextField(help_text="A listing's external id, or part of its URL.")
    sort = serializers.ChoiceField(choices=list(SORTS), required=False, help_text="Default: position.")
    kind = serializers.ChoiceField(
        choices=list(VEHICLE_KINDS), required=False, help_text="The kind of vehicle the detector saw in the crop."
    )
    similar_to = serializers.RegexField(
        SIMILAR_TO_PATTERN,
        required=False,
        help_text="More like this: an image id, or up to 50 comma-separated; the sitemap's images most like them.",
        error_messages={"invalid": "similar_to must be up to 50 image ids (positive whole numbers, comma-separated)"},
    )
    similar_count = serializers.IntegerField(
        required=False, min_value=1, max_value=1000, help_text="How many of the most similar images (50)."
    )

    class Meta:
        ref_name = "GridQuery"

    def validate_similar_to(self, value: str) -> str:
        try:
            similar_param(value)
        except GridFilterError as exc:
            raise ValidationError(str(exc)) from exc
        return value

    def validate_confidence_below(self, value: float) -> float:
        if not math.isfinite(value):
            raise ValidationError("give a number from 0 to 1")
        return value

    def as_filters(self) -> GridFilters:
        """The filters as the grid reads them (its spelling of a yes is "1")."""
        data = self.validated_data
        params = {name: "1" if value is True else str(value) for name, value in data.items() if value is not False}
        return GridFilters.from_params(params)


MAX_PAGE = ApiPagination.max_limit


class GridPageQuerySerializer(GridQuerySerializer):
    """The grid's filters and a keyset page of them: `limit` rows after (before) a cursor from `next` (`previous`)."""

    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text=f"Page size: 1 to {MAX_PAGE}, default {api_settings.PAGE_SIZE}; more is clamped to {MAX_PAGE}.",
    )
    after = serializers.CharField(
        required=False, max_length=MAX_CURSOR, help_text="The page after this cursor: follow `next`."
    )
    before = serializers.CharField(
        required=False, max_length=MAX_CURSOR, help_text="The page before this cursor: follow `previous`."
    )
    offset = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=0,
        help_text="Not used: this list pages by cursor (0 only, for clients that always send it).",
        error_messages={"max_value": "this list pages by cursor, not by offset: follow `next` (after=...)"},
    )

    class Meta:
        ref_name = "GridPageQuery"

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("after") and attrs.get("before"):
            raise ValidationError({"before": ["give after or before, not both"]})
        return attrs

    def as_paging(self, filters: GridFilters) -> Paging:
        """The page asked for; a cursor that is not one of this list's (malformed, or of another sort) is a 400."""
        for name in ("after", "before"):
            text = self.validated_data.get(name)
            if text:
                key = decode_cursor(text, filters=filters)
                if key is None:
                    raise ValidationError({name: [f"not a cursor of this list sorted by {filters.sort}: follow next"]})
                return Paging(after=key) if name == "after" else Paging(before=key)
        return Paging()

    @property
    def page_size(self) -> int:
        return min(int(self.validated_data.get("limit") or api_settings.PAGE_SIZE or MAX_PAGE), MAX_PAGE)


class SitemapImageListApi(APIView):
    """A sitemap's live images with their effective tags, filtered and sorted as in the review grid, and read as the
    grid reads them: the stored tags, one keyset page at a time (`next` and `previous` carry a cursor), so every page
    costs the same few queries whatever its place, the filter or the sitemap's size."""

    class PageSerializer(serializers.Serializer):
        count = serializers.IntegerField(help_text="Images matching the filters.")
        next = serializers.URLField(allow_null=True, help_text="The next page (a cursor), or null on the last one.")
        previous = serializers.URLField(allow_null=True, help_text="The previous page, or null on the first one.")
        results = ImageSerializer(many=True)

        class Meta:
            ref_name = "SitemapImagePage"

    @extend_schema(
        operation_id="sitemaps_images_list",
        parameters=[GridPageQuerySerializer],
        responses={
            200: PageSerializer,
            409: OpenApiResponse(DetailSerializer, description="similar_to: no image_type model is active."),
        },
    )
    def get(self, request: Request, sitemap_id: int) -> Response:
        sitemap = get_object_or_404(sitemaps_visible_to(request.user), pk=sitemap_id)
        query = GridPageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.as_filters()
        paging = query.as_paging(filters)
        page = sitemap_grid(
            sitemap=sitemap, filters=filters, paging=paging, per_page=query.page_size, cluster_sizes=False
        )
        placements = [item.placement for item in page.items]
        context = {
            "request": request,
            "tags": {item.placement.pk: item.tags for item in page.items},
            "kinds": vehicle_kinds(p.asset_id for p in placements if p.asset_id),
            "legacy": query.as_legacy(),
        }
        url = remove_query_param(remove_query_param(request.build_absolute_uri(), "after"), "before")
        url = remove_query_param(url, "offset")
        if "limit" in request.query_params:
            url = replace_query_param(url, "limit", query.page_size)  # as clamped
        body = {
            "count": page.total,
            "next": replace_query_param(url, "after", page.last_key) if page.has_next and page.items else None,
            "previous": replace_query_param(url, "before", page.first_key)
            if page.has_previous and page.items
            else None,
            "results": ImageSerializer(placements, many=True, context=context).data,
        }
        return Response(body)


class ImageDetailApi(APIView):
    """One image with its effective tags."""

    @extend_schema(parameters=[LegacyQuerySerializer], responses=ImageSerializer)
    def get(self, request: Request, image_id: int) -> Response:
        placement = get_object_or_404(placements_visible_to(request.user), pk=image_id)
        query = LegacyQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        context = {
            "request": request,
            "tags": effective_tags([placement]),
            "kinds": vehicle_kinds([placement.asset_id] if placement.asset_id else []),
            "legacy": query.as_legacy(),
        }
        return Response(ImageSerializer(placement, context=context).data)


class HistoryClassificationSerializer(serializers.ModelSerializer):
    class ModelVersionSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        status = serializers.CharField()

        class Meta:
            ref_name = "HistoryModelVersion"

    model_version = ModelVersionSerializer()

    class Meta:
        model = Classification
        fields = [
            "model_version", "task", "status", "label", "confidence", "margin", "scores", "crop_box", "crop_source",
            "error", "created_at", "updated_at",
        ]  # fmt: skip


class HistoryPlacementSerializer(serializers.Serializer):
    class SitemapSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        advertiser = serializers.CharField(source="advertiser.slug")

        class Meta:
            ref_name = "HistorySitemap"

    id = serializers.IntegerField(source="pk")
    url = serializers.URLField()
    status = serializers.CharField(help_text="pending, ok or failed.")
    is_gone = serializers.BooleanField()
    listing = ImageListingSerializer()
    sitemap = SitemapSerializer(source="listing.sitemap")


class ImageHistoryApi(APIView):
    """Everything known about an image's picture: every classification of it (per model version), every fix
    in its advertiser's scope, and where the picture appears (the same advertiser's placements; for staff,
    every advertiser's). Fixes are never another advertiser's, even for staff: they are per advertiser."""

    class OutputSerializer(serializers.Serializer):
        image = ImageSerializer()
        classifications = HistoryClassificationSerializer(many=True)
        fixes = FixSerializer(many=True, help_text="Newest first; the first one per task is in effect.")
        placements = HistoryPlacementSerializer(many=True)

        class Meta:
            ref_name = "ImageHistory"

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, image_id: int) -> Response:
        placement = get_object_or_404(placements_visible_to(request.user), pk=image_id)
        advertiser_id = placement.listing.sitemap.advertiser_id
        history: dict[str, Any] = {"image": placement, "classifications": [], "fixes": [], "placements": [placement]}
        if placement.asset_id is not None:
            history["classifications"] = (
                Classification.objects.filter(asset_id=placement.asset_id)
                .select_related("model_version")
                .order_by("task", "-created_at", "-id")
            )
            history["fixes"] = ManualFix.objects.filter(
                advertiser_id=advertiser_id, asset_id=placement.asset_id
            ).select_related("user")
            others = placements_visible_to(request.user).filter(asset_id=placement.asset_id)
            if not request.user.is_staff:
                others = others.filter(listing__sitemap__advertiser_id=advertiser_id)
            history["placements"] = others.order_by("listing__sitemap__advertiser_id", "listing_id", "position")
        context = {"request": request, "tags": effective_tags([placement])}
        return Response(self.OutputSerializer(history, context=context).data)


class ImageFixCreateApi(APIView):
    """Records a manual fix of one image's tag for its advertiser (staff and editors; viewers get 403).

    201 with the fix. A label that is already the effective one records a confirmation (a fix to the same label,
    `confirmation` true), as the review queue's accept does: the dataset export counts what a client confirmed as
    well as what it fixed. 400 with the reason when the label is not one of the task's or there is no picture yet.
    """

    class InputSerializer(serializers.Serializer):
        task = serializers.ChoiceField(choices=Task.choices)
        label = serializers.CharField(  # type: ignore[assignment]  # a field named label (see ImageTagSerializer)
            max_length=LABEL_MAX_LENGTH, help_text="One of the task's labels (case-insensitive)."
        )
        note = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=NOTE_MAX_LENGTH,
            help_text=f"Why, for the image's history (at most {NOTE_MAX_LENGTH} characters: fixes are kept forever).",
        )  # fmt: skip

        class Meta:
            ref_name = "FixCreateInput"

    @extend_schema(
        request=InputSerializer,
        responses={
            201: FixSerializer,
            400: OpenApiResponse(DetailSerializer, description="Invalid task or label."),
            403: OpenApiResponse(DetailSerializer, description="The user is a viewer of this advertiser."),
            409: OpenApiResponse(DetailSerializer, description="The image has no downloaded picture yet."),
        },
    )
    def post(self, request: Request, image_id: int) -> Response:
        placement = get_object_or_404(placements_visible_to(request.user), pk=image_id)
        _require_fixer(request.user, placement.listing.sitemap.advertiser_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, data = _acting_user(request), serializer.validated_data
        fix = manual_fix_create(placement=placement, user=user, source=_fix_source(user), confirm=True, **data)
        return Response(FixSerializer(fix).data, status=status.HTTP_201_CREATED)


class FixInputSchema(OpenApiSerializerExtension):
    """The fix body's schema is fix_input_schema: a label of the task named, which a serializer cannot say."""

    target_class = ImageFixCreateApi.InputSerializer

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        return fix_input_schema()


class FixRevertApi(APIView):
    """Reverts a fix with a new row that puts back what was in effect before it: a fix back to the fix in effect then,
    or a withdrawal (`withdraws`: no fix in effect, the model's or the scrape's tag again). Both stay in the history.
    Only the fix in effect (the latest of its scope) can be reverted."""

    @extend_schema(
        request=None,
        responses={
            201: FixSerializer,
            403: OpenApiResponse(DetailSerializer, description="The user is a viewer of this advertiser."),
            409: OpenApiResponse(DetailSerializer, description="Fixed again since: revert the latest fix."),
        },
    )
    def post(self, request: Request, fix_id: int) -> Response:
        fix = get_object_or_404(fixes_visible_to(request.user), pk=fix_id)
        _require_fixer(request.user, fix.advertiser_id)
        user = _acting_user(request)
        revert = manual_fix_revert(fix=fix, user=user, source=_fix_source(user))
        return Response(FixSerializer(revert).data, status=status.HTTP_201_CREATED)


class RunListApi(PaginatedApi):
    """Runs the user may see, newest first; ?sitemap=<id> for one sitemap's (404 if it is not visible)."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "sitemap", {"type": "integer", "minimum": 1}, description="Only this sitemap's Runs (its id)."
            )
        ],
        responses=RunOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        runs = runs_visible_to(request.user).order_by("-created_at", "-id")
        if (sitemap_id := request.query_params.get("sitemap")) is not None:
            if not sitemap_id.isdigit():
                raise ValidationError({"sitemap": "give a sitemap id (an integer)"})
            sitemap = get_object_or_404(sitemaps_visible_to(request.user), pk=int(sitemap_id))
            runs = runs.filter(sitemap=sitemap)
        page = self.paginate(runs, request)
        return self.paginated_response(RunOutputSerializer(page, many=True).data)
