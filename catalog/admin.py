from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from .fetching.addresses import url_refusal
from .models import Advertiser, ImageAsset, Listing, Membership, Placement, Run, Sitemap
from .services.runs import RunError, run_cancel


def thumbnail_tag(asset: ImageAsset | None, size: int = 64) -> str:
    if asset is None or not asset.thumbnail:
        return "-"
    return format_html(
        '<img src="{}" alt="" loading="lazy" style="max-width:{}px;max-height:{}px">',
        asset.thumbnail.url,
        size,
        size,
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """A table the admin shows but never writes: append-only history, or rows only their services may write."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Advertiser)
class AdvertiserAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "is_active", "sitemap_count", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Advertiser]:
        return super().get_queryset(request).annotate(sitemap_count=Count("sitemaps"))

    @admin.display(ordering="sitemap_count", description="Sitemaps")
    def sitemap_count(self, obj: Advertiser) -> int:
        return obj.sitemap_count  # type: ignore[attr-defined]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "advertiser", "role", "created_at"]
    list_filter = ["role", "advertiser"]
    search_fields = ["user__username", "user__email", "advertiser__name"]
    autocomplete_fields = ["user", "advertiser"]


RUN_COUNTERS = ("urls", "not_modified", "cache_hits", "downloaded", "failed", "classified")
RUN_INLINE_FIELDS = ("status", "trigger", *RUN_COUNTERS, "started_at", "finished_at")
PLACEMENT_INLINE_FIELDS = ("thumbnail", "position", "url", "status", "failure_reason", "is_gone")


class RunInline(admin.TabularInline):
    model = Run
    extra = 0
    can_delete = False
    show_change_link = True
    fields = RUN_INLINE_FIELDS
    readonly_fields = RUN_INLINE_FIELDS
    ordering = ["-created_at"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Run]:
        return super().get_queryset(request).order_by("-created_at")


class SitemapAdminForm(forms.ModelForm):
    # A plain text field checked by the fetcher's own validator, so a refused URL says why
    # ("unsupported scheme 'file' (only http and https)") rather than "Enter a valid URL".
    url = forms.CharField(max_length=2048, required=False, help_text="http(s) URL; empty only for a scrape feed.")

    class Meta:
        model = Sitemap
        fields = "__all__"  # noqa: DJ007 - the admin shows every field

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        if url and (refusal := url_refusal(url)):
            raise forms.ValidationError(refusal)
        return url


@admin.register(Sitemap)
class SitemapAdmin(admin.ModelAdmin):
    form = SitemapAdminForm
    list_display = ["__str__", "advertiser", "kind", "schedule", "is_enabled", "url"]
    list_filter = ["kind", "schedule", "is_enabled", "advertiser"]
    search_fields = ["name", "url", "advertiser__name", "advertiser__slug"]
    list_select_related = ["advertiser"]
    autocomplete_fields = ["advertiser"]
    inlines = [RunInline]


class PlacementInline(admin.TabularInline):
    model = Placement
    extra = 0
    fields = PLACEMENT_INLINE_FIELDS
    readonly_fields = PLACEMENT_INLINE_FIELDS
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Placement]:
        return super().get_queryset(request).select_related("asset")

    @admin.display(description="Image")
    def thumbnail(self, obj: Placement) -> str:
        return thumbnail_tag(obj.asset)


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    list_display = ["__str__", "sitemap", "external_id", "is_gone", "last_seen_at"]
    list_filter = ["is_gone", "sitemap__advertiser"]
    search_fields = ["external_id", "url", "title"]
    list_select_related = ["sitemap__advertiser"]
    raw_id_fields = ["sitemap"]
    inlines = [PlacementInline]


@admin.register(ImageAsset)
class ImageAssetAdmin(admin.ModelAdmin):
    list_display = ["thumbnail", "sha256", "width", "height", "format", "byte_size", "created_at"]
    list_filter = ["format"]
    search_fields = ["=sha256", "=phash", "placements__url"]
    readonly_fields = [
        "preview",
        "sha256",
        "phash",
        "width",
        "height",
        "format",
        "byte_size",
        "original",
        "thumbnail",
    ]
    show_full_result_count = False

    @admin.display(description="Image")
    def thumbnail(self, obj: ImageAsset) -> str:
        return thumbnail_tag(obj)

    @admin.display(description="Preview")
    def preview(self, obj: ImageAsset) -> str:
        return thumbnail_tag(obj, size=320)


@admin.register(Placement)
class PlacementAdmin(admin.ModelAdmin):
    list_display = ["thumbnail", "url", "position", "status", "failure_reason", "is_gone", "last_checked_at"]
    list_filter = ["status", "failure_reason", "is_gone", "listing__sitemap__advertiser"]
    search_fields = ["url", "listing__external_id", "asset__sha256"]
    list_select_related = ["asset"]
    raw_id_fields = ["listing", "asset"]
    show_full_result_count = False

    @admin.display(description="Image")
    def thumbnail(self, obj: Placement) -> str:
        return thumbnail_tag(obj.asset)


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "sitemap",
        "trigger",
        "status",
        "step",
        *RUN_COUNTERS,
        "started_at",
        "finished_at",
    ]
    list_filter = ["status", "trigger", "sitemap__advertiser"]
    search_fields = ["sitemap__url", "sitemap__name", "sitemap__advertiser__name"]
    list_select_related = ["sitemap__advertiser"]
    readonly_fields = [
        "sitemap",
        "trigger",
        "status",
        "step",
        "requested_by",
        "listings",
        "urls",
        "not_modified",
        "cache_hits",
        "downloaded",
        "failed",
        "classified",
        "failure_reasons",
        "source_errors",
        "source_warnings",
        "error",
        "health_flags",
        "started_at",
        "finished_at",
        "attempts",
    ]
    exclude = ["feed_document"]
    actions = ["cancel_runs"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Cancel the selected queued or running Runs")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        """Each Run fails with the error "cancelled" (catalog.services.runs.run_cancel); finished ones are left."""
        cancelled, refused = [], []
        for run_id in queryset.values_list("pk", flat=True):
            try:
                run_cancel(run_id=run_id)
            except RunError as exc:
                refused.append(str(exc))
            else:
                cancelled.append(run_id)
        if cancelled:
            self.message_user(
                request, f"Cancelled Run{'s' if len(cancelled) != 1 else ''} {', '.join(map(str, cancelled))}"
            )
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)
