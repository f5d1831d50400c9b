"""Who hears about a Run that went wrong, and what was sent to them.

A NotificationSetting says where to send (email addresses, a webhook URL signed with its secret), for one advertiser
or, without one, for every advertiser. A Notification records one message about one Run to one target: its channel,
payload, status and attempts, so the Run page shows who was told and whether it reached them.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.db.models import Q

from catalog.fetching.addresses import url_refusal
from catalog.models import Advertiser, Run, TimeStampedModel


def split_addresses(text: str) -> list[str]:
    """The email addresses of a setting: separated by commas, semicolons, spaces or new lines."""
    return [part for part in text.replace(",", " ").replace(";", " ").split() if part]


class NotificationSetting(TimeStampedModel):
    """Where notifications of an advertiser's Runs go; without an advertiser, of every advertiser's Runs.

    Every enabled setting that covers a Run's advertiser (its own and the global ones) is used; an address or a
    webhook URL named by several of them is notified once.
    """

    advertiser = models.ForeignKey(
        Advertiser,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="notification_settings",
        help_text="Empty: every advertiser (global).",
    )
    is_enabled = models.BooleanField(default=True)
    emails = models.TextField(blank=True, help_text="Email addresses, separated by commas or new lines.")
    webhook_url = models.CharField(
        max_length=2048, blank=True, help_text="http(s) URL that receives a signed JSON POST per notification."
    )
    webhook_secret = models.CharField(
        max_length=200,
        blank=True,
        help_text="Shared secret of the webhook: the body's HMAC-SHA256 is sent as "
        "X-Imagetagger-Signature: sha256=<hex>.",
    )

    class Meta:
        ordering = ["advertiser__name", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(emails="") | ~Q(webhook_url=""), name="notify_setting_has_target"),
            models.CheckConstraint(
                condition=Q(webhook_url="") | ~Q(webhook_secret=""), name="notify_webhook_has_secret"
            ),
        ]

    def __str__(self) -> str:
        scope = str(self.advertiser) if self.advertiser_id else "every advertiser"
        targets = [*split_addresses(self.emails), *([self.webhook_url] if self.webhook_url else [])]
        return f"{scope}: {', '.join(targets) or 'nobody'}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        for address in split_addresses(self.emails):
            try:
                validate_email(address)
            except ValidationError:
                errors["emails"] = f"{address!r} is not an email address"
        url = self.webhook_url.strip()
        if url and (refusal := url_refusal(url)):
            errors["webhook_url"] = refusal
        if url and not self.webhook_secret:
            errors["webhook_secret"] = "a webhook needs a secret: its receiver checks the signature"  # noqa: S105
        if not split_addresses(self.emails) and not url:
            errors["emails"] = "give email addresses, a webhook URL, or both"
        if errors:
            raise ValidationError(errors)

    @property
    def addresses(self) -> list[str]:
        return split_addresses(self.emails)


class Notification(TimeStampedModel):
    """One message about one Run to one target (an email address or a webhook URL)."""

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Failed, to be retried"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="notifications")
    setting = models.ForeignKey(
        NotificationSetting, on_delete=models.SET_NULL, null=True, blank=True, related_name="notifications"
    )
    channel = models.CharField(max_length=10, choices=Channel.choices)
    target = models.CharField(max_length=2048, help_text="The email address or the webhook URL.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    payload = models.JSONField(default=dict, help_text="What was sent (the webhook's body; the email's content).")
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A Run notifies each target once, however often its after-finish steps run.
            models.UniqueConstraint(fields=["run", "channel", "target"], name="notification_unique_run_target"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} to {self.target} about run {self.run_id} ({self.status})"

    @property
    def is_done(self) -> bool:
        return self.status in (self.Status.SENT, self.Status.FAILED)
