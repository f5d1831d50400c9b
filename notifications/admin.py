from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import Notification, NotificationSetting
from .services import notification_resend


class NotificationSettingForm(forms.ModelForm):
    webhook_secret = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=True),
        help_text=NotificationSetting._meta.get_field("webhook_secret").help_text,
    )

    class Meta:
        model = NotificationSetting
        fields = ["advertiser", "is_enabled", "emails", "webhook_url", "webhook_secret"]
        widgets = {"emails": forms.Textarea(attrs={"rows": 3})}


@admin.register(NotificationSetting)
class NotificationSettingAdmin(admin.ModelAdmin):
    form = NotificationSettingForm
    list_display = ["scope", "is_enabled", "emails", "webhook_url", "updated_at"]
    list_filter = ["is_enabled", ("advertiser", admin.EmptyFieldListFilter)]
    search_fields = ["emails", "webhook_url", "advertiser__name", "advertiser__slug"]
    list_select_related = ["advertiser"]
    autocomplete_fields = ["advertiser"]

    @admin.display(ordering="advertiser__name", description="For")
    def scope(self, obj: NotificationSetting) -> str:
        return str(obj.advertiser) if obj.advertiser_id else "every advertiser (global)"


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "channel", "target", "status", "attempts", "created_at", "sent_at"]
    list_filter = ["status", "channel", "run__sitemap__advertiser"]
    search_fields = ["target", "run__sitemap__name", "run__sitemap__advertiser__name"]
    list_select_related = ["run__sitemap__advertiser"]
    readonly_fields = [
        "run", "setting", "channel", "target", "status", "attempts", "last_error", "payload", "sent_at",
        "created_at", "updated_at",
    ]  # fmt: skip
    actions = ["send_again"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # the record of who was told: the Run page shows it

    @admin.action(description="Send the selected failed notifications again")
    def send_again(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        failed = list(queryset.filter(status=Notification.Status.FAILED))
        for notification in failed:
            notification_resend(notification=notification)
        skipped = queryset.count() - len(failed)
        text = f"{len(failed)} notification{'s' if len(failed) != 1 else ''} sent again"
        if skipped:
            self.message_user(request, f"{text}; {skipped} left as they are (only failed ones)", messages.WARNING)
        else:
            self.message_user(request, text)
