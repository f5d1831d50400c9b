"""The audit sample: a small, random, stable share of each advertiser's images per task, asked whatever the model's
confidence, so that accuracy measured on it is unbiased (the queue otherwise picks the hard images; SageMaker A2I's
sampling rate does the same).

An (advertiser, asset, task) is audited when the first 8 hex digits of MD5("<advertiser id>:<asset id>:<task>"), read
as a number, fall under settings.QUEUE_AUDIT_RATE of 16**8. The rule is defined once here, as a SQL expression for
querysets (`audited`) and as its Python twin (`is_audited`); a test checks that they agree. The digits are compared as
strings of equal length (lowercase hex sorts as its value), which SQLite and PostgreSQL both do without a
hex-to-integer function.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import BooleanField, CharField, Value
from django.db.models.functions import MD5, Cast, Concat, Substr
from django.db.models.lookups import LessThan

DIGITS = 8  # hex digits of the hash read: 16**8 steps, far finer than any rate in use


def audit_rate() -> float:
    """settings.QUEUE_AUDIT_RATE, checked: a share between 0 and 1."""
    rate = getattr(settings, "QUEUE_AUDIT_RATE", 0.02)
    if not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ImproperlyConfigured(f"QUEUE_AUDIT_RATE must be a share between 0 and 1, not {rate!r}")
    return float(rate)


def _threshold(rate: float) -> str | None:
    """The hash prefix under which a scope is audited, as DIGITS lowercase hex digits; None: none or all are."""
    bound = round(rate * 16**DIGITS)
    if bound <= 0 or bound >= 16**DIGITS:
        return None
    return f"{bound:0{DIGITS}x}"


def _key(advertiser_id: Any, asset_id: Any, task: Any) -> str:
    return f"{advertiser_id}:{asset_id}:{task}"


def is_audited(advertiser_id: int, asset_id: int, task: str) -> bool:
    """Whether (advertiser, asset, task) is in the audit sample (the Python twin of `audited`)."""
    rate = audit_rate()
    threshold = _threshold(rate)
    if threshold is None:
        return rate >= 1
    return hashlib.md5(_key(advertiser_id, asset_id, task).encode(), usedforsecurity=False).hexdigest()[:DIGITS] < (
        threshold
    )


def audited(*, advertiser: Any, asset: Any, task: Any) -> Any:
    """A boolean SQL expression: whether the row's (advertiser, asset, task) is in the audit sample. The arguments are
    expressions (F("advertiser_id"), OuterRef(...), Value("color")); usable in filter(), annotate() and When()."""
    rate = audit_rate()
    threshold = _threshold(rate)
    if threshold is None:
        return Value(rate >= 1, output_field=BooleanField())
    text = CharField()
    key = Concat(Cast(advertiser, text), Value(":"), Cast(asset, text), Value(":"), Cast(task, text), output_field=text)
    return LessThan(Substr(MD5(key), 1, DIGITS), Value(threshold))
