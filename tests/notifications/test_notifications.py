"""Notifications of Runs that went wrong: a real local HTTP server receives the signed webhooks, Django's mail the
emails; the Celery task runs eagerly (its retries too, without their delays)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from catalog.fetching import FetchError, SafeFetcher
from catalog.models import Run
from catalog.services.runs import run_finish
from catalog.sources import fetch_policy
from notifications.models import Notification, NotificationSetting
from notifications.services import (
    run_notify,
    standard_webhook_signature,
    webhook_delivery,
    webhook_signature,
)
from notifications.tasks import notification_send_task
from tests.factories import AdvertiserFactory, PlacementFactory, RunFactory, SitemapFactory, UserFactory

pytestmark = pytest.mark.django_db

SECRET = "s3cret-of-the-receiver"
FAILURES_JUMP = {"code": "failures_jump", "message": "40% of the images failed (4 of 10), against 0% on average"}
LABEL_JUMP = {"code": "label_share_jump", "message": "image_type: share of Stock jumped", "task": "image_type"}


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: answers each POST with the next status of `statuses` (the last one repeats)
    and keeps what it got."""

    statuses: list[int] = field(default_factory=lambda: [200])
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    # A receiver that checks what it gets: a POST this refuses answers 401 (and counts as a request all the same).
    check: Callable[[dict[str, str], bytes], bool] | None = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            state.requests.append((headers, body))
            status = state.statuses[min(len(state.requests), len(state.statuses)) - 1]
            if state.check is not None and not state.check(headers, body):
                status = 401
            answer = b'{"ok": true}' if status < 300 else b"down for maintenance"
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}/hooks/imagetagger"
    yield state
    server.shutdown()
    server.server_close()


def flagged_run(*flags, advertiser=None):
    sitemap = SitemapFactory(advertiser=advertiser or AdvertiserFactory(name="Dealer One"), name="Used cars")
    return RunFactory(
        sitemap=sitemap, status=Run.Status.PARTIAL, urls=10, downloaded=6, failed=4, finished_at=timezone.now(),
        health_flags=list(flags),
    )  # fmt: skip


def test_a_flagged_run_posts_a_signed_webhook_the_receiver_can_verify(
    receiver, eager_celery, django_capture_on_commit_callbacks
):
    run = flagged_run(FAILURES_JUMP, LABEL_JUMP)
    NotificationSetting.objects.create(
        advertiser=run.sitemap.advertiser, webhook_url=receiver.url, webhook_secret=SECRET
    )

    with django_capture_on_commit_callbacks(execute=True):
        [notification] = run_notify(run=run)

    [(headers, body)] = receiver.requests
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-imagetagger-signature"], expected)
    assert headers["content-type"] == "application/json"
    assert headers["x-imagetagger-event"] == "run.flagged"
    assert headers["x-imagetagger-delivery"] == str(notification.pk)
    payload = json.loads(body)
    assert [flag["code"] for flag in payload["flags"]] == ["failures_jump"]  # a label share jump notifies nobody
    assert (payload["run"]["run"], payload["run"]["failed"], payload["advertiser"]["name"]) == (run.pk, 4, "Dealer One")
    assert payload["run"]["url"].endswith(reverse("reviews:staff-run", args=[run.pk]))
    notification.refresh_from_db()
    assert (notification.status, notification.attempts, notification.last_error) == ("sent", 1, "")
    assert notification.payload == payload  # the record holds exactly what was sent
    assert notification.sent_at is not None
    # Signed with another secret, the same body does not verify.
    assert webhook_signature(secret="another", body=body) != headers["x-imagetagger-signature"]


def readme_verify_webhook() -> Callable[..., bool]:
    """The README's verify_webhook, run as written: the receivers copy it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [code] = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "def verify_webhook" in block]
    namespace: dict[str, object] = {}
    exec(textwrap.dedent(code), namespace)  # noqa: S102 - our own README
    return namespace["verify_webhook"]  # type: ignore[return-value]


def test_standard_webhooks_signature_matches_the_specifications_example():
    # The example of the Standard Webhooks specification (and of the Svix libraries that it came from).
    signature = standard_webhook_signature(
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp=1614265330,
        body=b'{"test": 2432232314}',
    )

    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("secret", [SECRET, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
def test_a_receiver_verifies_the_timestamped_signature_and_refuses_a_replay(
    receiver, eager_celery, django_capture_on_commit_callbacks, secret
):
    verify_webhook = readme_verify_webhook()
    receiver.check = lambda headers, body: verify_webhook(secret, headers, body)
    run = flagged_run(FAILURES_JUMP)
    NotificationSetting.objects.create(webhook_url=receiver.url, webhook_secret=secret)

    with django_capture_on_commit_callbacks(execute=True):
        [notification] = run_notify(run=run)

    notification.refresh_from_db()
    assert notification.status == "sent"  # the receiver verified it
    [(headers, body)] = receiver.requests
    assert headers["webhook-id"] == f"msg_{notification.pk}"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["webhook-signature"].startswith("v1,")
    assert hmac.compare_digest(headers["x-imagetagger-signature"], webhook_signature(secret=secret, body=body))

    # The same POST captured and sent again ten minutes later, or with its timestamp moved, or another body.
    stale = webhook_delivery(notification, secret, timestamp=int(time.time()) - 600)
    moved = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}
    lowered = {name.lower(): value for name, value in stale.headers.items()}
    assert verify_webhook(secret, lowered, stale.body) is False
    assert verify_webhook(secret, moved, body) is False
    assert verify_webhook(secret, headers, body.replace(b'"failed":4', b'"failed":0')) is False
    assert verify_webhook("another secret", headers, body) is False
    assert verify_webhook(secret, headers, body) is True
    assert verify_webhook(secret, {k: v for k, v in headers.items() if k != "webhook-id"}, body) is False
    with SafeFetcher(fetch_policy()) as fetcher, pytest.raises(FetchError, match="HTTP 401"):
        fetcher.post(receiver.url, content=stale.body, headers=stale.headers)


def test_a_failing_endpoint_is_retried_then_recorded_failed(receiver, settings):
    settings.NOTIFY_MAX_RETRIES = 2
    receiver.statuses = [503]
    run = flagged_run(FAILURES_JUMP)
    NotificationSetting.objects.create(webhook_url=receiver.url, webhook_secret=SECRET)  # global
    [notification] = run_notify(run=run)

    notification_send_task.apply(args=[notification.pk])

    notification.refresh_from_db()
    assert len(receiver.requests) == 3  # the first attempt and two retries
    assert (notification.status, notification.attempts) == ("failed", 3)
    assert "HTTP 503" in notification.last_error
    # The same delivery each time: one id, one signature over the same body.
    assert {headers["x-imagetagger-delivery"] for headers, _ in receiver.requests} == {str(notification.pk)}
    assert len({body for _, body in receiver.requests}) == 1


def test_a_transient_failure_is_retried_until_it_is_sent(receiver, settings):
    settings.NOTIFY_MAX_RETRIES = 5
    receiver.statuses = [502, 500, 200]
    [notification] = run_notify_with(NotificationSetting(webhook_url=receiver.url, webhook_secret=SECRET))

    notification_send_task.apply(args=[notification.pk])

    notification.refresh_from_db()
    assert (notification.status, notification.attempts, notification.last_error) == ("sent", 3, "")
    assert len(receiver.requests) == 3


def test_a_refusing_endpoint_is_not_retried(receiver, settings):
    settings.NOTIFY_MAX_RETRIES = 5
    receiver.statuses = [410]  # gone: asking again will not help
    [notification] = run_notify_with(NotificationSetting(webhook_url=receiver.url, webhook_secret=SECRET))

    notification_send_task.apply(args=[notification.pk])

    notification.refresh_from_db()
    assert (notification.status, notification.attempts, len(receiver.requests)) == ("failed", 1, 1)
    assert "HTTP 410" in notification.last_error


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.20.30.40/hook", "10.20.30.40 is private (RFC 1918)"),
        ("http://192.168.1.5:8080/hook", "192.168.1.5 is private (RFC 1918)"),
        ("http://[::1]:9/hook", "::1 is loopback"),
    ],
)
def test_a_private_network_webhook_is_refused_and_recorded(url, why, settings):
    settings.NOTIFY_MAX_RETRIES = 5
    settings.FETCH_ALLOW_NETWORKS = ["127.0.0.0/8"]  # the tests' own servers; not these
    [notification] = run_notify_with(NotificationSetting(webhook_url=url, webhook_secret=SECRET))

    notification_send_task.apply(args=[notification.pk])

    notification.refresh_from_db()
    assert (notification.status, notification.attempts) == ("failed", 1)  # a refusal is never retried
    assert notification.last_error == f"refused {url}: {why}"


def test_a_flagged_run_emails_every_address_once(eager_celery, django_capture_on_commit_callbacks):
    advertiser = AdvertiserFactory(name="Dealer One")
    run = flagged_run({"code": "ml_failed", "message": "the model failed on 3 images"}, advertiser=advertiser)
    NotificationSetting.objects.create(advertiser=advertiser, emails="ops@dealer.example, Sales@dealer.example")
    NotificationSetting.objects.create(emails="oncall@imagetagger.example\nops@dealer.example")  # global
    NotificationSetting.objects.create(emails="nobody@elsewhere.example", advertiser=AdvertiserFactory())
    NotificationSetting.objects.create(emails="muted@imagetagger.example", is_enabled=False)

    with django_capture_on_commit_callbacks(execute=True):
        created = run_notify(run=run)

    assert sorted(n.target for n in created) == [
        "Sales@dealer.example",
        "oncall@imagetagger.example",
        "ops@dealer.example",
    ]
    assert sorted(message.to[0] for message in mail.outbox) == sorted(n.target for n in created)
    message = mail.outbox[0]
    assert message.subject == f"[imagetagger] Dealer One: Run {run.pk} of Used cars needs a look"
    assert "- the model failed on 3 images" in message.body
    assert reverse("reviews:staff-run", args=[run.pk]) in message.body
    assert set(Notification.objects.values_list("status", "attempts")) == {("sent", 1)}

    # The after-finish steps may run again for the same Run: nobody hears twice.
    with django_capture_on_commit_callbacks(execute=True):
        assert run_notify(run=run) == []
    assert len(mail.outbox) == 3


def test_a_healthy_run_notifies_nobody(django_capture_on_commit_callbacks):
    run = flagged_run(LABEL_JUMP)
    NotificationSetting.objects.create(emails="ops@dealer.example")
    with django_capture_on_commit_callbacks(execute=True):
        assert run_notify(run=run) == []
    assert not Notification.objects.exists()
    assert mail.outbox == []


def test_a_finished_run_with_a_failure_jump_notifies_after_its_flags(eager_celery, django_capture_on_commit_callbacks):
    """run_finish -> reviews.health.run_health_record -> notifications.services.run_notify, for real."""
    sitemap = SitemapFactory()
    NotificationSetting.objects.create(emails="ops@dealer.example")
    for _ in range(3):
        RunFactory(sitemap=sitemap, status=Run.Status.SUCCEEDED, urls=10, not_modified=10, finished_at=timezone.now())
    run = RunFactory(sitemap=sitemap, status=Run.Status.RUNNING, started_at=timezone.now(), urls=10)
    for n in range(10):
        outcome = "failed" if n < 5 else "not_modified"
        PlacementFactory(
            listing__sitemap=sitemap, url=f"https://cdn.example/{n}.jpg", last_run=run, outcome=outcome,
            status="failed" if n < 5 else "pending", failure_reason="http_404" if n < 5 else "",
        )  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        run_finish(run=run)

    run.refresh_from_db()
    assert "failures_jump" in [flag["code"] for flag in run.health_flags]
    [notification] = Notification.objects.filter(run=run)
    assert (notification.channel, notification.status) == ("email", "sent")
    [message] = mail.outbox
    assert "50% of the images failed (5 of 10)" in message.body


def test_the_admin_edits_settings_and_refuses_a_webhook_without_secret(client):
    client.force_login(UserFactory(username="admin", is_staff=True, is_superuser=True))
    advertiser = AdvertiserFactory()
    url = reverse("admin:notifications_notificationsetting_add")
    form = {
        "advertiser": advertiser.pk,
        "is_enabled": "on",
        "emails": "ops@dealer.example",
        "webhook_url": "https://hooks.example/x",
    }

    refused = client.post(url, {**form, "webhook_secret": ""})
    assert refused.status_code == 200
    assert "a webhook needs a secret" in refused.content.decode()
    bad_scheme = client.post(url, {**form, "webhook_url": "file:///etc/passwd", "webhook_secret": SECRET})
    assert "unsupported scheme" in bad_scheme.content.decode()
    assert client.post(url, {**form, "emails": "not an address"}).status_code == 200
    assert not NotificationSetting.objects.exists()

    assert client.post(url, {**form, "webhook_secret": SECRET}).status_code == 302
    setting = NotificationSetting.objects.get()
    assert (setting.advertiser, setting.addresses, setting.webhook_secret) == (
        advertiser,
        ["ops@dealer.example"],
        SECRET,
    )
    assert client.get(reverse("admin:notifications_notificationsetting_changelist")).status_code == 200
    notification = Notification.objects.create(
        run=RunFactory(), channel="email", target="ops@dealer.example", status="failed"
    )
    assert client.get(reverse("admin:notifications_notification_change", args=[notification.pk])).status_code == 200


def test_the_admin_sends_a_failed_notification_again(
    client, receiver, eager_celery, django_capture_on_commit_callbacks
):
    client.force_login(UserFactory(username="admin", is_staff=True, is_superuser=True))
    [notification] = run_notify_with(NotificationSetting(webhook_url=receiver.url, webhook_secret=SECRET))
    Notification.objects.filter(pk=notification.pk).update(status="failed", attempts=6, last_error="HTTP 503")
    sent = Notification.objects.create(
        run=notification.run, channel="email", target="ops@dealer.example", status="sent"
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:notifications_notification_changelist"),
            {"action": "send_again", ACTION_CHECKBOX_NAME: [notification.pk, sent.pk]},
            follow=True,
        )

    assert "1 notification sent again; 1 left as they are (only failed ones)" in response.content.decode()
    notification.refresh_from_db()
    assert (notification.status, notification.attempts, notification.last_error) == ("sent", 7, "")
    assert len(receiver.requests) == 1
    assert mail.outbox == []  # the one already sent was left alone


def run_notify_with(setting: NotificationSetting) -> list[Notification]:
    run = flagged_run(FAILURES_JUMP)
    setting.advertiser = run.sitemap.advertiser
    setting.save()
    return run_notify(run=run)
