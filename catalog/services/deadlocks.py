"""Database locks: a named lock held until the transaction ends, and a transaction that PostgreSQL chose as a
deadlock's victim, run again at once.

The writers of shared rows take their locks in one order (reviews.effective_store), so a deadlock is not expected;
one that still happens (a lock order this code does not know of) costs a few milliseconds and a warning, not a Run
left waiting for its lease to run out.
"""

from __future__ import annotations

import logging
import random
import time
import zlib
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connection, transaction

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE for deadlock_detected
ATTEMPTS = 4


def advisory_xact_lock(name: str) -> None:
    """Takes the lock called `name` until the current transaction ends (PostgreSQL's transaction-level advisory lock,
    keyed by the name's CRC-32; taken again in the same transaction it returns at once). A no-op on SQLite, which
    has one writer at a time anyway."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [zlib.crc32(name.encode())])


def is_deadlock(exc: BaseException) -> bool:
    """Whether the database error is PostgreSQL's deadlock_detected (Django wraps the driver's error)."""
    cause = exc.__cause__ if isinstance(exc, OperationalError) else exc
    return getattr(cause, "sqlstate", None) == DEADLOCK_DETECTED


def atomic_retrying_deadlocks(work: Callable[[], T], *, what: str) -> T:
    """Runs `work` in a transaction; if it is a deadlock's victim, runs it again in a new one, at once (after a few
    milliseconds of jitter, so the two do not meet again in step), up to ATTEMPTS times. Inside an outer transaction
    it only runs `work` in a savepoint: a deadlock aborts the outer transaction, which its owner retries."""
    if connection.in_atomic_block:
        with transaction.atomic():
            return work()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return work()
        except OperationalError as exc:
            if attempt == ATTEMPTS or not is_deadlock(exc):
                raise
            logger.warning("%s: deadlock detected (attempt %s of %s), running it again", what, attempt, ATTEMPTS)
            time.sleep(random.uniform(0.005, 0.05))  # noqa: S311 - jitter, not security
    raise AssertionError("unreachable")  # pragma: no cover
