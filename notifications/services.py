"""Notifications of Runs that went wrong: who is told (settings), what is sent (email, signed webhook), and the record.

`run_notify(run=...)` is one of settings.RUN_AFTER_FINISH, after the health flags: a Run whose flags include one of
settings.NOTIFY_FLAG_CODES (a failure jump, a failed ML step, a CDN change, a drift) gets one Notification per target,
each sent by a Celery task after commit. `notification_send` makes one attempt and records it; the task retries the
transient failures with a growing delay, up to settings.NOTIFY_MAX_RETRIES times.

A webhook is a JSON POST signed with the setting's secret as Standard Webhooks (standardwebhooks.com) sign: headers
`webhook-id` (the notification's, the same on every attempt), `webhook-timestamp` (Unix seconds of the attempt) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, so a receiver can refuse a replayed POST
(an old timestamp, or an id it has seen). The older `X-Imagetagger-Signature: sha256=<hex>` (the body's HMAC alone)
is still sent, so receivers written for it keep working. It goes through the safe fetcher like every outbound
request, so a URL that resolves to a private network is refused (and recorded as failed) unless
settings.FETCH_ALLOW_NETWORKS allows it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import smtplib
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from catalog.fetching import FetchError, SafeFetcher
from catalog.models import Run
from catalog.sources import fetch_policy
from core.errors import ApplicationError

from .models import Notification, NotificationSetting

logger = logging.getLogger(__name__)

EVENT = "run.flagged"
SIGNATURE_HEADER = "X-Imagetagger-Signature"  # the body's HMAC alone: kept for the receivers written for it
# Standard Webhooks (https://www.standardwebhooks.com/): the signature covers the id and the time as well as the body.
WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 - Standard Webhooks' prefix of a base64 secret, not a secret
EVENT_HEADER = "X-Imagetagger-Event"
DELIVERY_HEADER = "X-Imagetagger-Delivery"
WEBHOOK_ANSWER_MAX_BYTES = 64 * 1024  # the receiver's answer is read and dropped
MAX_RETRY_DELAY = 3600.0


class DeliveryError(ApplicationError):
    """One attempt to deliver a notification failed; `transient` says whether another attempt may succeed."""

    code = "delivery_failed"
    http_status = 502

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Delivery:
    """The exact bytes and headers of a webhook POST."""

    body: bytes
    headers: dict[str, str]


def webhook_signature(*, secret: str, body: bytes) -> str:
    """The value of X-Imagetagger-Signature: "sha256=" and the hex HMAC-SHA256 of the body with the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_key(secret: str) -> bytes:
    """The HMAC key of a secret, as the Standard Webhooks libraries take it: a "whsec_<base64>" secret is its decoded
    bytes (so `standardwebhooks.Webhook(secret).verify(...)` works); any other secret is its UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def standard_webhook_signature(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The value of webhook-signature: "v1," and the base64 HMAC-SHA256 of "<msg_id>.<timestamp>.<body>"."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(webhook_key(secret), signed, hashlib.sha256).digest()).decode()


def notifying_flags(run: Run) -> list[dict[str, Any]]:
    """The Run's health flags that call for a notification (settings.NOTIFY_FLAG_CODES)."""
    codes = set(settings.NOTIFY_FLAG_CODES)
    return [flag for flag in run.health_flags or [] if isinstance(flag, dict) and flag.get("code") in codes]


def settings_for_advertiser(advertiser_id: int) -> QuerySet[NotificationSetting]:
    """The enabled settings that cover an advertiser: its own first, then the global ones."""
    return NotificationSetting.objects.filter(
        Q(advertiser_id=advertiser_id) | Q(advertiser__isnull=True), is_enabled=True
    ).order_by(F("advertiser_id").asc(nulls_last=True), "id")


def run_page_url(run_id: int) -> str:
    return settings.SITE_URL + reverse("reviews:staff-run", args=[run_id])


def run_payload(*, run: Run, flags: list[dict[str, Any]]) -> dict[str, Any]:
    """What a notification about the Run says (the webhook's JSON body; the email is written from it)."""
    sitemap = run.sitemap
    advertiser = sitemap.advertiser
    return {
        "event": EVENT,
        "flags": flags,
        "run": {
            **run.counters(),
            "health_flags": run.health_flags,
            "url": run_page_url(run.pk),
        },
        "sitemap": {"id": sitemap.pk, "name": str(sitemap), "url": sitemap.url},
        "advertiser": {"id": advertiser.pk, "name": advertiser.name, "slug": advertiser.slug},
    }


def run_notify(*, run: Run) -> list[Notification]:
    """Notifies every target of the settings covering the Run's advertiser when its health flags call for it
    (settings.RUN_AFTER_FINISH, after reviews.health.run_health_record). Returns the notifications it created.

    Idempotent: a target already notified about the Run is not notified again (a resumed Run calls this twice).
    Each new notification is sent by a task once the transaction commits.
    """
    from .tasks import notification_send_task

    flags = notifying_flags(run)
    if not flags:
        return []
    run = Run.objects.select_related("sitemap__advertiser").get(pk=run.pk)
    payload = run_payload(run=run, flags=flags)
    targets: dict[tuple[str, str], NotificationSetting] = {}
    for setting in settings_for_advertiser(run.sitemap.advertiser_id):
        for address in setting.addresses:
            targets.setdefault((Notification.Channel.EMAIL, address), setting)
        if setting.webhook_url:
            targets.setdefault((Notification.Channel.WEBHOOK, setting.webhook_url.strip()), setting)
    created = []
    for (channel, target), setting in targets.items():
        notification, new = Notification.objects.get_or_create(
            run=run, channel=channel, target=target, defaults={"setting": setting, "payload": payload}
        )
        if new:
            created.append(notification)
            notification_send_task.delay_on_commit(notification.pk)  # type: ignore[attr-defined]  # not in celery-types yet
    if created:
        logger.info("run %s: %d notification(s) for %s", run.pk, len(created), [f["code"] for f in flags])
    return created


def notification_send(*, notification_id: int, final: bool = False) -> Notification | None:
    """One attempt to deliver the notification, recorded on it (attempts, status, last error). A transient failure
    leaves it "retrying" (the task tries again), unless `final`; any other failure makes it "failed". A notification
    already sent or failed is left as it is (a redelivered task sends nothing twice)."""
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(of=("self",))
            .select_related("setting")
            .filter(pk=notification_id)
            .first()
        )
        if notification is None or notification.is_done:
            return notification
        notification.attempts += 1
        notification.save(update_fields=["attempts", "updated_at"])
    try:
        if notification.channel == Notification.Channel.WEBHOOK:
            _post_webhook(notification)
        else:
            _send_email(notification)
    except DeliveryError as exc:
        notification.status = (
            Notification.Status.RETRYING if exc.transient and not final else Notification.Status.FAILED
        )
        notification.last_error = str(exc)[:2000]
        logger.warning("notification %s (attempt %d): %s", notification.pk, notification.attempts, exc)
    else:
        notification.status = Notification.Status.SENT
        notification.sent_at = timezone.now()
        notification.last_error = ""
    notification.save(update_fields=["status", "last_error", "sent_at", "updated_at"])
    return notification


def notification_resend(*, notification: Notification) -> Notification:
    """Sends a failed notification again (from the admin): it starts over as pending, with its attempts kept."""
    from .tasks import notification_send_task

    if notification.status != Notification.Status.FAILED:
        return notification
    notification.status = Notification.Status.PENDING
    notification.save(update_fields=["status", "updated_at"])
    notification_send_task.delay_on_commit(notification.pk)  # type: ignore[attr-defined]  # not in celery-types yet
    return notification


def retry_delay(retries: int) -> float:
    """Seconds before attempt `retries + 2`: settings.NOTIFY_RETRY_BACKOFF, doubling, at most an hour."""
    return float(min(settings.NOTIFY_RETRY_BACKOFF * 2**retries, MAX_RETRY_DELAY))


def webhook_delivery(notification: Notification, secret: str, *, timestamp: int | None = None) -> Delivery:
    """The POST of one attempt: the same id and body on every attempt, signed with the attempt's time (now, unless
    ``timestamp`` says otherwise)."""
    body = json.dumps(notification.payload, sort_keys=True, separators=(",", ":")).encode()
    msg_id = f"msg_{notification.pk}"
    sent_at = int(time.time()) if timestamp is None else timestamp
    return Delivery(
        body=body,
        headers={
            "Content-Type": "application/json",
            WEBHOOK_ID_HEADER: msg_id,
            WEBHOOK_TIMESTAMP_HEADER: str(sent_at),
            WEBHOOK_SIGNATURE_HEADER: standard_webhook_signature(
                secret=secret, msg_id=msg_id, timestamp=sent_at, body=body
            ),
            SIGNATURE_HEADER: webhook_signature(secret=secret, body=body),
            EVENT_HEADER: str(notification.payload.get("event", EVENT)),
            DELIVERY_HEADER: str(notification.pk),
        },
    )


def _post_webhook(notification: Notification) -> None:
    setting = notification.setting
    if setting is None or not setting.webhook_secret:
        raise DeliveryError("the webhook's setting is gone: there is no secret to sign with", transient=False)
    delivery = webhook_delivery(notification, setting.webhook_secret)
    timeout = settings.NOTIFY_WEBHOOK_TIMEOUT
    policy = fetch_policy(
        connect_timeout=timeout, read_timeout=timeout, deadline=2 * timeout, max_bytes=WEBHOOK_ANSWER_MAX_BYTES
    )
    try:
        with SafeFetcher(policy) as fetcher:
            fetcher.post(notification.target, content=delivery.body, headers=delivery.headers)
    except FetchError as exc:
        raise DeliveryError(str(exc), transient=exc.transient) from exc


def email_content(payload: dict[str, Any]) -> tuple[str, str]:
    """The subject and text of a notification email, from its payload."""
    run, sitemap, advertiser = payload["run"], payload["sitemap"], payload["advertiser"]
    flags = payload.get("flags", [])
    subject = f"[imagetagger] {advertiser['name']}: Run {run['run']} of {sitemap['name']} needs a look"
    lines = [
        f"Run {run['run']} of {sitemap['name']} ({advertiser['name']}) finished {run['status']}.",
        "",
        *[f"- {flag.get('message', flag.get('code'))}" for flag in flags],
        "",
        f"{run['urls']} image URLs: {run['downloaded']} downloaded, {run['cache_hits']} already known, "
        f"{run['not_modified']} not modified, {run['failed']} failed; {run['classified']} classified.",
        "",
        f"The Run: {run['url']}",
    ]
    return subject[:200], "\n".join(lines)


def _send_email(notification: Notification) -> None:
    subject, text = email_content(notification.payload)
    try:
        send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, [notification.target])
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        raise DeliveryError(f"refused by the mail server: {exc}", transient=False) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}", transient=True) from exc
