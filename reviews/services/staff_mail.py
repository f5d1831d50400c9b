"""Email to staff: every active staff user with an address (the loop's proposals, a promotion that regressed)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.mail import send_mail


def staff_mail(subject: str, body: str) -> int:
    """Sends the message to every active staff user with an email address; returns how many were sent (0: none)."""
    staff = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    recipients = list(staff.values_list("email", flat=True))
    return send_mail(subject, body, None, recipients) if recipients else 0
