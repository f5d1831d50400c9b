"""Reads of the notifications app."""

from __future__ import annotations

from django.db.models import QuerySet

from catalog.models import Run

from .models import Notification


def run_notifications(*, run: Run) -> QuerySet[Notification]:
    """The notifications about a Run, oldest first."""
    return Notification.objects.filter(run=run).order_by("created_at", "id")
