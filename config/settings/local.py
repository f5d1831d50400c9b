"""A developer's machine: debug on, a fixed insecure key, local servers reachable by the fetcher."""

import os

from .base import *

DEBUG = True
SECRET_KEY = SECRET_KEY or "django-insecure-local-only-imagetagger"
if "FETCH_ALLOW_NETWORKS" not in os.environ:
    # The demo serves its inventory from this machine.
    FETCH_ALLOW_NETWORKS = ["127.0.0.0/8", "::1/128"]
if "PROMOTION_WATCH_SECONDS" not in os.environ:
    # The demo's promotions are watched for minutes, not days.
    PROMOTION_WATCH_SECONDS = 30 * 60
