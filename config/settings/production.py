"""Production: every secret from the environment, no default key, HTTPS."""

import os

from .base import *

SECRET_KEY = env_required("DJANGO_SECRET_KEY", "by config.settings.production (a long random string)")
DEBUG = False
# Served over HTTPS (a TLS-terminating proxy in front sets X-Forwarded-Proto): the redirect, HSTS and Secure cookies.
# DJANGO_HTTPS=false serves plain HTTP on purpose, as docker-compose.yml does on one machine (http://localhost:8000):
# none of the four then, and `check --deploy` says so.
HTTPS = env_bool("DJANGO_HTTPS", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
# HTTPS only, for a year, subdomains included (check --deploy); a proxy that serves plain HTTP internally (health
# checks) can turn the redirect off.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", default=HTTPS)
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", str(365 * 24 * 3600 if HTTPS else 0)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", default=HTTPS)
# Login lockouts and throttling count in the cache: a per-process cache in production misses attempts made on
# other processes, so django-axes' warning stays on here (set CACHE_URL=redis://...).
SILENCED_SYSTEM_CHECKS = [check for check in SILENCED_SYSTEM_CHECKS if check != "axes.W001"]
# Static files from the web process itself, as the ecosystem does it: WhiteNoise right after SecurityMiddleware,
# serving what `collectstatic` put in STATIC_ROOT when the image was built (Dockerfile), with hashed names and
# compressed copies, cached for ever.
MIDDLEWARE = [
    *MIDDLEWARE[: MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1],
    "whitenoise.middleware.WhiteNoiseMiddleware",
    *MIDDLEWARE[MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1 :],
]
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
