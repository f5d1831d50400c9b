"""Celery tasks of the notifications app, on the default queue: thin, ids in, services do the work."""

from celery import Task, shared_task
from django.conf import settings


@shared_task(name="notifications.send", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def notification_send_task(self: Task, notification_id: int) -> None:
    """Sends one notification; a transient failure is retried (settings.NOTIFY_MAX_RETRIES times, growing delays),
    then recorded as failed. Idempotent: a notification already sent or failed is left alone."""
    from notifications.models import Notification
    from notifications.services import notification_send, retry_delay

    retries = self.request.retries
    notification = notification_send(notification_id=notification_id, final=retries >= settings.NOTIFY_MAX_RETRIES)
    if notification is not None and notification.status == Notification.Status.RETRYING:
        raise self.retry(countdown=retry_delay(retries), max_retries=settings.NOTIFY_MAX_RETRIES)
