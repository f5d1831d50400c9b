"""The test suite: PostgreSQL when DATABASE_URL says so (CI), SQLite otherwise; fast hashing."""

import os
import tempfile

from .base import *

SECRET_KEY = "django-insecure-test-only"  # noqa: S105
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = Path(os.environ.get("DJANGO_MEDIA_ROOT", tempfile.mkdtemp(prefix="imagetagger-media-")))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not the shared in-memory database: Runs write from several threads, which needs real locking.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"imagetagger-test-{os.getpid()}.sqlite3")
    }
FETCH_ALLOW_NETWORKS = env_list("FETCH_ALLOW_NETWORKS", "127.0.0.0/8")
LOGGING = {"version": 1, "disable_existing_loggers": False}
# Tests send many requests as one user within a minute; the throttling test sets its own rates.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"advertiser": "100000/minute", "anon": "100000/minute"}}
# Hash-picked audit items would land in other tests' queues by chance (ids differ between runs and backends): tests of
# the audit sample set their own rate.
QUEUE_AUDIT_RATE = 0.0
