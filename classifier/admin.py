from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from catalog.admin import ReadOnlyAdmin, thumbnail_tag
from catalog.imaging import crop_box_style

from .models import Classification, Detection, ModelHead, ModelVersion, OcclusionMap, Promotion, ShadowPass, TrainingJob


class ModelHeadInline(admin.TabularInline):
    model = ModelHead
    extra = 0
    can_delete = False
    fields = ("task", "output", "labels", "is_active")
    readonly_fields = ("task", "output", "labels", "is_active")

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "status", "active_tasks", "short_sha", "activated_at", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "=sha256"]
    readonly_fields = ["name", "kind", "file", "sha256", "contract", "status", "metrics", "activated_at"]
    inlines = [ModelHeadInline]
    actions = ["activate"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelVersion]:
        return super().get_queryset(request).prefetch_related("heads")

    @admin.action(description="Activate (promote) the selected classifiers", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        """As activate_model without --force: refused until the version's shadow pass is done, and the refusal
        says why."""
        from .services.promotion import PromotionError, model_promote

        for version in queryset.order_by("pk"):
            try:
                promotion = model_promote(version=version, user=request.user, force=False)
            except PromotionError as exc:
                self.message_user(request, f"{version.name} (#{version.pk}): {exc}", messages.ERROR)
            else:
                version.refresh_from_db()
                tasks = ", ".join(head.task for head in version.heads.all() if head.is_active)
                self.message_user(
                    request,
                    f"{version.name} (#{version.pk}) is now active for {tasks or promotion.task}",
                    messages.SUCCESS,
                )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # registration checks the contract against the graph: use register_model

    @admin.display(description="SHA-256")
    def short_sha(self, obj: ModelVersion) -> str:
        return obj.sha256[:12]

    @admin.display(description="Active for")
    def active_tasks(self, obj: ModelVersion) -> str:
        return ", ".join(head.task for head in obj.heads.all() if head.is_active) or "-"


@admin.register(Classification)
class ClassificationAdmin(admin.ModelAdmin):
    list_display = ["thumbnail", "task", "status", "label", "confidence", "margin", "crop_source", "model_version",
                    "updated_at"]  # fmt: skip
    list_filter = ["task", "status", "crop_source", "model_version", "label"]
    search_fields = ["=asset__sha256", "label", "error"]
    list_select_related = ["asset", "model_version"]
    raw_id_fields = ["asset"]
    readonly_fields = ["preview", "asset", "model_version", "task", "status", "label", "confidence", "margin",
                       "scores", "crop_box", "crop_source", "error"]  # fmt: skip
    show_full_result_count = False

    @admin.display(description="Image")
    def thumbnail(self, obj: Classification) -> str:
        return thumbnail_tag(obj.asset)

    @admin.display(description="Image and crop")
    def preview(self, obj: Classification) -> str:
        asset = obj.asset
        if not asset.thumbnail:
            return "-"
        box = ""
        if obj.crop_box:
            box = format_html(
                '<div style="position:absolute;border:2px solid #1f6feb;{}"></div>',
                crop_box_style(obj.crop_box, asset.width, asset.height),
            )
        return format_html(
            '<div style="position:relative;display:inline-block"><img src="{}" style="max-width:320px;display:block">'
            "{}</div>",
            asset.thumbnail.url,
            box,
        )


@admin.register(Detection)
class DetectionAdmin(admin.ModelAdmin):
    list_display = ["asset", "model_version", "box", "created_at"]
    list_filter = ["model_version"]
    raw_id_fields = ["asset"]
    search_fields = ["=asset__sha256"]


@admin.register(OcclusionMap)
class OcclusionMapAdmin(ReadOnlyAdmin):
    list_display = ["id", "thumbnail", "task", "label", "model_version", "status", "progress", "updated_at"]
    list_filter = ["task", "status", "model_version"]
    search_fields = ["=asset__sha256", "label"]
    list_select_related = ["asset", "model_version"]

    @admin.display(description="Image")
    def thumbnail(self, obj: OcclusionMap) -> str:
        return thumbnail_tag(obj.asset)


@admin.register(TrainingJob)
class TrainingJobAdmin(ReadOnlyAdmin):
    list_display = ["id", "task", "export_id", "parent", "status", "progress", "stage", "created_by", "created_at"]
    list_filter = ["task", "status"]
    list_select_related = ["parent", "created_by"]


@admin.register(ShadowPass)
class ShadowPassAdmin(ReadOnlyAdmin):
    list_display = ["id", "model_version", "status", "done", "total", "started_at", "finished_at"]
    list_filter = ["status"]
    list_select_related = ["model_version"]


@admin.register(Promotion)
class PromotionAdmin(ReadOnlyAdmin):
    list_display = ["id", "task", "kind", "from_version", "to_version", "forced", "user", "created_at"]
    list_filter = ["task", "kind", "forced"]
    list_select_related = ["from_version", "to_version", "user"]
