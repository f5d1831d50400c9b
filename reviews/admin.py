"""The review tables in the admin, read-only: fixes are append-only and exports are written by their services."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from catalog.admin import ReadOnlyAdmin, thumbnail_tag

from .models import CONFIRMATION, DatasetExport, ExportExclusion, ExportItem, ManualFix


class FixKindFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("decision", "Review decisions (settle a conflict)"),
            ("fix", "Fixes (a new label)"),
            ("confirmation", "Confirmations (the label in effect)"),
            ("revert", "Reverts"),
            ("carried", "Carried forward"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ManualFix]) -> QuerySet[ManualFix]:
        match self.value():
            case "decision":
                return queryset.filter(settles=True)
            case "fix":
                return queryset.exclude(CONFIRMATION)
            case "confirmation":
                return queryset.filter(CONFIRMATION)
            case "revert":
                return queryset.filter(reverts__isnull=False)
            case "carried":
                return queryset.filter(source=ManualFix.Source.CARRIED)
        return queryset


@admin.register(ManualFix)
class ManualFixAdmin(ReadOnlyAdmin):
    list_display = ["id", "thumbnail", "advertiser", "task", "old_label", "new_label", "withdraws", "source",
                    "settles", "confirmation", "user", "created_at"]  # fmt: skip
    list_filter = [FixKindFilter, "withdraws", "settles", "source", "task", "advertiser"]
    search_fields = ["=asset__sha256", "new_label", "old_label", "note", "user__username", "advertiser__slug"]
    list_select_related = ["advertiser", "asset", "user"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    @admin.display(description="Image")
    def thumbnail(self, obj: ManualFix) -> str:
        return thumbnail_tag(obj.asset)

    @admin.display(description="Confirmation", boolean=True)
    def confirmation(self, obj: ManualFix) -> bool:
        return obj.is_confirmation


@admin.register(DatasetExport)
class DatasetExportAdmin(ReadOnlyAdmin):
    list_display = ["id", "task", "status", "label_issues", "frozen_at", "used_for_training_at", "created_by",
                    "created_at"]  # fmt: skip
    list_filter = ["task", "status"]
    search_fields = ["=sha256"]
    list_select_related = ["created_by"]


@admin.register(ExportItem)
class ExportItemAdmin(ReadOnlyAdmin):
    list_display = ["id", "export", "thumbnail", "advertiser", "label", "source", "split", "model_label", "decision"]
    list_filter = ["split", "source", "decision", "export"]
    search_fields = ["=asset__sha256", "label", "group"]
    list_select_related = ["export", "advertiser", "asset"]
    show_full_result_count = False

    @admin.display(description="Image")
    def thumbnail(self, obj: ExportItem) -> str:
        return thumbnail_tag(obj.asset)


@admin.register(ExportExclusion)
class ExportExclusionAdmin(ReadOnlyAdmin):
    list_display = ["id", "export", "advertiser", "asset", "label", "reason"]
    list_filter = ["reason", "export"]
    list_select_related = ["export", "advertiser"]
