"""The dataset export API (staff only: for anyone else these routes do not exist, 404).

POST /api/exports/ starts an export, which builds in the background (202); GET /api/exports/<id>/ follows it.
"""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import User
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.models import Task

from .apis import DetailSerializer
from .exports import export_create, export_list, export_summary
from .models import DatasetExport, ExportExclusion, ManualFix


def _require_staff(request: Request) -> None:
    if not request.user.is_staff:
        raise Http404


class ExportSerializer(serializers.ModelSerializer):
    """An export: where its build or freeze is, what it holds, and its file once frozen."""

    class LabelCountsSerializer(serializers.Serializer):
        # A field named label (the stubs type Field.label as a string).
        label = serializers.CharField()  # type: ignore[assignment]
        train = serializers.IntegerField()
        test = serializers.IntegerField()
        total = serializers.IntegerField()

        class Meta:
            ref_name = "ExportLabelCounts"

    url = serializers.SerializerMethodField()
    items = serializers.SerializerMethodField()
    labels = serializers.SerializerMethodField()
    imbalance = serializers.SerializerMethodField()
    file = serializers.SerializerMethodField()
    manifest = serializers.SerializerMethodField()
    counts = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text='{"train": {label: n}, "test": {label: n}}: the items that go in.',
    )
    excluded = serializers.DictField(
        child=serializers.IntegerField(), help_text=f"reason -> n; reasons: {', '.join(ExportExclusion.Reason.values)}"
    )
    changed = serializers.ListField(
        child=serializers.DictField(),
        help_text="Labels changed since the extended export: asset, advertiser, old, new.",
    )

    class Meta:
        model = DatasetExport
        ref_name = "DatasetExport"
        fields = [
            "id", "url", "task", "status", "progress", "stage", "error", "params", "extends", "model_version",
            "items", "counts", "labels", "imbalance", "excluded", "changed", "label_issues", "file", "manifest",
            "sha256", "created_at", "frozen_at", "used_for_training_at",
        ]  # fmt: skip

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, export: DatasetExport) -> str:
        return self.context["request"].build_absolute_uri(reverse("reviews_api:export-detail", args=[export.pk]))

    def get_items(self, export: DatasetExport) -> int:
        return export_summary(export).total

    @extend_schema_field(LabelCountsSerializer(many=True))
    def get_labels(self, export: DatasetExport) -> list[dict[str, Any]]:
        return [
            {"label": row.label, "train": row.train, "test": row.test, "total": row.total}
            for row in export_summary(export).labels
        ]

    @extend_schema_field(serializers.FloatField(allow_null=True, help_text="Largest class / smallest class."))
    def get_imbalance(self, export: DatasetExport) -> float | None:
        return export_summary(export).imbalance

    def _file_url(self, file: Any) -> str | None:
        if not file:
            return None
        return self.context["request"].build_absolute_uri(file.url)

    @extend_schema_field(serializers.URLField(allow_null=True, help_text="The ImageFolder zip, once frozen."))
    def get_file(self, export: DatasetExport) -> str | None:
        return self._file_url(export.file) if export.is_frozen else None

    @extend_schema_field(serializers.URLField(allow_null=True, help_text="The JSON Lines manifest, once frozen."))
    def get_manifest(self, export: DatasetExport) -> str | None:
        return self._file_url(export.manifest) if export.is_frozen else None


class ExportCreateApi(APIView):
    """Starts a dataset export of one task from the human labels (fixes and confirmations), filtered. It builds
    in the background: 202 with its id and URL, to follow with GET. 400 with the reason for an invalid field; 409
    with the reason when what is stored refuses it: an unknown advertiser, an export to extend that does not exist,
    is not frozen or is of another task, or no labelled image matches (then nothing is created). Staff only."""

    # JSON only: a form cannot say null (`since`, `extends`).
    parser_classes = [JSONParser]

    class InputSerializer(serializers.Serializer):
        task = serializers.ChoiceField(choices=Task.choices)
        since = serializers.DateField(
            required=False, allow_null=True, default=None, help_text="Fixes made since this date."
        )
        since_last_training = serializers.BooleanField(
            default=True,
            help_text="Without `since`: the fixes made since the last export used for training was built "
            "(every fix when false or when none was).",
        )
        advertisers = serializers.ListField(
            child=serializers.SlugField(), required=False, default=list, help_text="Advertiser slugs (all: empty)."
        )
        sources = serializers.ListField(
            child=serializers.ChoiceField(choices=[str(source) for source in ManualFix.HUMAN]),
            required=False,
            default=list,
            help_text="Fix sources (all human sources: empty).",
        )
        min_side = serializers.IntegerField(default=64, min_value=1, help_text="Smaller images stay out.")
        extends = serializers.IntegerField(
            required=False, allow_null=True, default=None, help_text="A frozen export to start from."
        )

        class Meta:
            ref_name = "ExportCreateInput"

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        status = serializers.CharField()
        url = serializers.URLField(help_text="GET it to follow the build.")

        class Meta:
            ref_name = "ExportCreated"

    @extend_schema(
        request=InputSerializer,
        responses={
            202: OutputSerializer,
            400: OpenApiResponse(description="An invalid field (`{field: [messages]}`)."),
            409: OpenApiResponse(
                DetailSerializer,
                description="An unknown advertiser, an export to extend that does not exist, is not frozen or is of "
                "another task, or no labelled image matches.",
            ),
            404: OpenApiResponse(description="Not staff."),
        },
    )
    def post(self, request: Request) -> Response:
        _require_staff(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        export = export_create(**serializer.validated_data, user=cast(User, request.user))
        url = request.build_absolute_uri(reverse("reviews_api:export-detail", args=[export.pk]))
        return Response(
            self.OutputSerializer({"id": export.pk, "status": export.status, "url": url}).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": url},
        )


class ExportDetailApi(APIView):
    """One dataset export: status and progress while it builds or freezes, class counts and imbalance, what was
    left out and why, likely label mistakes, and the zip's URL and SHA-256 once frozen. Staff only."""

    @extend_schema(responses={200: ExportSerializer, 404: OpenApiResponse(description="No such export, or not staff.")})
    def get(self, request: Request, export_id: int) -> Response:
        _require_staff(request)
        export = get_object_or_404(export_list(), pk=export_id)
        return Response(ExportSerializer(export, context={"request": request}).data)
