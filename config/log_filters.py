"""Logging filters of the settings' LOGGING."""

from __future__ import annotations

import logging


class ClientErrorsWithoutTraceback(logging.Filter):
    """django.request logs a 403 (PermissionDenied) as a warning with the exception's traceback, and django.security
    a 400 (a bad Host, say) likewise: the client's mistake, said in its one line, not a fault of ours. 5xx answers
    keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", 500) < 500:
            record.exc_info = None
            record.exc_text = None
        return True
