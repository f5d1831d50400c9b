"""Settings shared by every environment. Everything that differs between machines comes from the
environment (see .env.example); with nothing set, the project runs on embedded defaults: SQLite, local
file storage and a file-system Celery broker, so a newcomer needs no server."""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("IMAGETAGGER_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).lower() in {"1", "true", "yes", "on"}


def env_required(name: str, why: str) -> str:
    """A variable these settings cannot do without: a missing one stops every entry point (manage.py, wsgi, the
    Celery app) with its name, not a KeyError that Celery turns into "no attribute 'worker_state_db'"."""
    value = os.environ.get(name, "")
    if not value:
        raise ImproperlyConfigured(f"{name} is required {why}")
    return value


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
DEBUG = env_bool("DJANGO_DEBUG")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_celery_beat",
    "axes",
    "catalog",
    "classifier",
    "reviews",
    "notifications",
    "benchmarks",  # last: it may import every app above, and none imports it
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # A domain error escaping a screen is a message, every error under /api/ is JSON, a NUL character is a 400.
    "config.middleware.ErrorMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several worker threads write counters while a Run goes on: wait for the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", VAR_DIR / "staticfiles"))
MEDIA_URL = os.environ.get("DJANGO_MEDIA_URL", "/media/")
MEDIA_ROOT = Path(os.environ.get("DJANGO_MEDIA_ROOT", VAR_DIR / "media"))

# Storage: local files by default; S3-compatible storage when IMAGETAGGER_STORAGE=s3. Objects stay private
# (no ACL): browsers get them through presigned URLs that expire in minutes (`url()` signs them), or through the
# scope-checking media view, which redirects to one. Keys unset: boto3's own chain (instance role, ~/.aws).
if os.environ.get("IMAGETAGGER_STORAGE", "local") == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_required("AWS_STORAGE_BUCKET_NAME", "when IMAGETAGGER_STORAGE=s3"),
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            "access_key": os.environ.get("AWS_ACCESS_KEY_ID") or None,
            "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
            "addressing_style": os.environ.get("AWS_S3_ADDRESSING_STYLE") or None,  # "path" for MinIO and the like
            "signature_version": "s3v4",
            "querystring_auth": True,
            "querystring_expire": int(os.environ.get("AWS_QUERYSTRING_EXPIRE", "300")),
            "default_acl": None,
            "file_overwrite": True,  # names are content-addressed: the same name holds the same bytes
        },
    }
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {}}
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# The cache: throttling and login lockouts count in it, so every process must share it: Redis when CACHE_URL
# says so (production), this process's memory otherwise (one dev server, tests).
CACHE_URL = os.environ.get("CACHE_URL", "")
SILENCED_SYSTEM_CHECKS: list[str] = []
if CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # django-axes warns that a per-process cache misses attempts made on other processes: true, and production
    # sets CACHE_URL (check --deploy then reports nothing).
    SILENCED_SYSTEM_CHECKS.append("axes.W001")

# Brute-force protection of the logins (the screens' and the admin's): django-axes counts failures per
# (username, address) in the cache and answers 429 for a while after too many.
AUTHENTICATION_BACKENDS = [
    "config.security.LoginAttemptsBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_HOURS", "0.25"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "config.security.lockout_response"  # with Retry-After
AXES_VERBOSE = False  # no "AXES: BEGIN ..." banner on every manage.py command

# Content-Security-Policy of the screens (django-csp). Scripts are our own files (htmx, the grid's script, the
# API docs' start script): no inline script and no eval. Templates and htmx set style attributes, and the API docs
# page has a <style> block, hence 'unsafe-inline' for styles only. Images may also come from the storage's own
# host (S3 presigned URLs): CSP_IMG_SRC adds origins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", *env_list("CSP_IMG_SRC")],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "reviews:home"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "config.api.Pagination",  # at most 500 rows a page
    "PAGE_SIZE": 100,
    # Advertisers' tokens and sessions per user (staff are not throttled), requests without credentials per address.
    "DEFAULT_THROTTLE_CLASSES": ["config.api.AdvertiserRateThrottle", "config.api.AnonymousRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "advertiser": os.environ.get("API_THROTTLE_ADVERTISER", "600/minute"),
        "anon": os.environ.get("API_THROTTLE_ANON", "60/minute"),
    },
    "EXCEPTION_HANDLER": "config.api_errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "imagetagger API",
    "DESCRIPTION": "Inventories, Runs, image tags and manual fixes.",
    "VERSION": "0.1.0",
    # The API docs UI served from our own static files: no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Every operation documents its error answers (400, 401, 403, 404, 409, 415, 429) with their bodies.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.api.error_responses_hook",
        "config.api.links_hook",  # OpenAPI links between operations (workflows)
        "config.api.blank_option_hook",
    ],
}

# Celery. Embedded default: a file-system broker under var/, so `runserver` and a worker work with no
# server; production sets CELERY_BROKER_URL=redis://... The file-system transport ignores the host, but kombu
# warns "No hostname was supplied" at every connection when the URL names none.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://localhost//")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery-broker"
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        # The exchange tables (default.exchange, celery.pidbox.exchange, ...): kombu's default is ./control.
        "control_folder": str(_broker_dir / "control"),
    }
    # kombu's transport with messages written whole before a worker can take them (config/broker.py).
    CELERY_BROKER_TRANSPORT = "config.broker:Transport"
else:
    # A Run can outlive the default one-hour visibility timeout of Redis; an acks_late task that is
    # not acknowledged by then would be delivered twice. A task of a worker killed mid-task waits that long in
    # Redis: the Runs do not wait for it, the lease checks resume them from the database (catalog.services.runs).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A broker away (restarted, or not up yet when the worker starts) is waited for, for as long as it takes: the worker
# never exits for it, and takes tasks again within seconds of its return.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = int(os.environ.get("CELERY_TASK_SOFT_TIME_LIMIT", 3 * 3600))
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 300
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER")
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    # Exact names win over patterns: the shadow pass runs beside training, so tagging never waits for it.
    "classifier.shadow_pass": {"queue": "training"},
    "classifier.training": {"queue": "training"},
    "reviews.retrain": {"queue": "training"},
    "reviews.retrain_nightly": {"queue": "training"},
    "classifier.*": {"queue": "inference"},
}

# Safe fetching (catalog.fetching). FETCH_ALLOW_NETWORKS opens private ranges for the demo and the tests
# only (e.g. 127.0.0.0/8); production leaves it empty.
FETCH_ALLOW_NETWORKS = env_list("FETCH_ALLOW_NETWORKS")
FETCH_USER_AGENT = os.environ.get(
    "FETCH_USER_AGENT", "imagetagger/0.1 (+https://example.com/imagetagger; inventory image tagging)"
)
FETCH_CONNECT_TIMEOUT = float(os.environ.get("FETCH_CONNECT_TIMEOUT", "5"))
FETCH_READ_TIMEOUT = float(os.environ.get("FETCH_READ_TIMEOUT", "15"))
FETCH_DEADLINE = float(os.environ.get("FETCH_DEADLINE", "60"))
FETCH_MAX_IMAGE_BYTES = int(os.environ.get("FETCH_MAX_IMAGE_BYTES", 25 * 1024 * 1024))
FETCH_MAX_DOCUMENT_BYTES = int(os.environ.get("FETCH_MAX_DOCUMENT_BYTES", 50 * 1024 * 1024))
# A scrape feed posted to the API, uncompressed (catalog.parsers): 100,000 listings of about 1 KB each.
FEED_MAX_BYTES = int(os.environ.get("FEED_MAX_BYTES", 100 * 1024 * 1024))
FETCH_MAX_REDIRECTS = int(os.environ.get("FETCH_MAX_REDIRECTS", "5"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "filters": {"client_errors_without_traceback": {"()": "config.log_filters.ClientErrorsWithoutTraceback"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # One line per image request is noise; failures are recorded on the placements.
    "loggers": {
        # Django's own console handler (DEBUG only) would print its lines a second time beside the root's,
        # e.g. the reloader's "Watching for file changes": its records go to the root handler only.
        "django": {"level": "INFO"},
        # A 403 or 400 is one line (method, path, status), without the traceback of the exception behind it.
        "django.request": {"filters": ["client_errors_without_traceback"]},
        "django.security": {"filters": ["client_errors_without_traceback"]},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# Runs (catalog.services.runs)
RUN_FETCH_CONCURRENCY = int(os.environ.get("RUN_FETCH_CONCURRENCY", "8"))
RUN_FETCH_PER_HOST = int(os.environ.get("RUN_FETCH_PER_HOST", "6"))
RUN_FETCH_RETRIES = int(os.environ.get("RUN_FETCH_RETRIES", "2"))
RUN_RETRY_BACKOFF = float(os.environ.get("RUN_RETRY_BACKOFF", "1.0"))
# Politeness per image host (catalog.fetching.politeness): Scrapy's AutoThrottle for a host whose answers take
# RUN_FETCH_SLOW_SECONDS or more (about RUN_FETCH_TARGET_CONCURRENCY requests in flight there, at most
# RUN_FETCH_MAX_DELAY between two), and Retry-After waits of up to RUN_FETCH_MAX_RETRY_AFTER seconds.
RUN_FETCH_TARGET_CONCURRENCY = float(os.environ.get("RUN_FETCH_TARGET_CONCURRENCY", "1.0"))
RUN_FETCH_SLOW_SECONDS = float(os.environ.get("RUN_FETCH_SLOW_SECONDS", "1.0"))
RUN_FETCH_MAX_DELAY = float(os.environ.get("RUN_FETCH_MAX_DELAY", "60"))
RUN_FETCH_MAX_RETRY_AFTER = float(os.environ.get("RUN_FETCH_MAX_RETRY_AFTER", "60"))
RUN_PROGRESS_SECONDS = float(os.environ.get("RUN_PROGRESS_SECONDS", "1.0"))
# The lease (catalog.services.runs): the process carrying a Run renews it every RUN_HEARTBEAT_SECONDS from a thread
# (one UPDATE); a Run whose worker has not shown signs of life for RUN_LEASE_SECONDS is resumed by another worker.
RUN_HEARTBEAT_SECONDS = float(os.environ.get("RUN_HEARTBEAT_SECONDS", "5"))
RUN_LEASE_SECONDS = int(os.environ.get("RUN_LEASE_SECONDS", "45"))
# A queued Run, or one waiting for its classify batches, silent this long while its queue is empty has lost its task
# (a broker restarted, a worker killed mid-batch): it is sent again. In a busy queue it may just be waiting: it is
# sent again after RUN_QUEUE_PATIENCE_SECONDS.
RUN_STALL_SECONDS = float(os.environ.get("RUN_STALL_SECONDS", "20"))
RUN_QUEUE_PATIENCE_SECONDS = float(os.environ.get("RUN_QUEUE_PATIENCE_SECONDS", "300"))
# The step after the images are in: step(run=run, inline=bool, progress=callback); it finishes the Run, or hands it
# over to batch tasks (their task name) which do; resume(run_id=id) sends again the batches of one that fell silent.
RUN_CLASSIFY_STEP = "classifier.services.pipeline.run_classify_step"
RUN_CLASSIFY_BATCH_TASK = "classifier.classify_batch"
RUN_CLASSIFY_RESUME = "classifier.services.pipeline.run_classify_resume"
# New images go to the models while the fetch goes on: stream(run=run, inline=bool) -> NewImageStream or None.
RUN_CLASSIFY_STREAM = "classifier.services.pipeline.run_classify_stream"
# On ("1", the default), a Run carried by a worker classifies its new images in its own fetch processes, on the decode
# that keyed them: each image is decoded once, and the inference queue gets only what they missed (an image whose
# decode cannot serve the models, such as a transparent one). The fetch processes share one set of sessions, made
# before the fork; the worker tree stays under its 500 MB bound in the flood test (tests/integration/
# test_worker_memory.py). Off ("0"): batches of new assets go to the inference queue during the fetch, and the inference
# workers read each original from storage and decode it again (spreads one Run over many machines).
RUN_CLASSIFY_IN_FETCH = os.environ.get("RUN_CLASSIFY_IN_FETCH", "1") == "1"
# The CPU work of new images (decode, pHash, thumbnail; inline, the models) runs in this many forked processes per
# Run, one per core; 0 keeps it in the fetch threads.
RUN_FETCH_PROCESSES = int(os.environ.get("RUN_FETCH_PROCESSES", str(os.cpu_count() or 1)))
# Called with run=run once the images are in (idempotent: a resumed Run calls them again).
RUN_AFTER_FETCH = ["catalog.services.run_assets_cluster", "reviews.services.fixes_carry_forward"]
# Called with run=run once the Run has finished (idempotent: a step that changes the Run calls them again).
RUN_AFTER_FINISH = ["reviews.health.run_health_record", "notifications.services.run_notify"]
# Called with run=run when nothing is left to classify, just before the Run finishes and outside its transaction:
# slow advisory work (the drift measure's features) done there holds no lock; failures are logged, never fatal.
# The watch after a promotion (reviews.services.watch): for this long, human labels compare the new model with the
# one it replaced on the same images; clearly worse (McNemar, one-sided, at ALPHA, with at least MIN_DISAGREEMENTS
# images where exactly one of them is right) raises `promotion_regressed`. Days in production; the demo sets minutes.
PROMOTION_WATCH_SECONDS = int(os.environ.get("PROMOTION_WATCH_SECONDS", str(7 * 24 * 3600)))
PROMOTION_WATCH_ALPHA = float(os.environ.get("PROMOTION_WATCH_ALPHA", "0.05"))
PROMOTION_WATCH_MIN_DISAGREEMENTS = int(os.environ.get("PROMOTION_WATCH_MIN_DISAGREEMENTS", "8"))
# Training gives each vehicle kind of the export (the active detector's) the same total weight, so that a kind few
# labels show does not fade from one retrain to the next (issue 20); 0 weighs every label alike.
TRAINING_BALANCE_KINDS = os.environ.get("TRAINING_BALANCE_KINDS", "1") == "1"
# A head scoped to one advertiser (classifier.services.scoped) also reads the mean colors of a 4x4 grid of its input
# (classifier.training.adapter): on the drifted style, the embedding alone held 0.82 color at best.
SCOPED_HEAD_ADAPTER = os.environ.get("SCOPED_HEAD_ADAPTER", "1") == "1"
RUN_BEFORE_FINISH = [
    "classifier.services.scoped.run_scoped_heads",  # the advertiser's scoped heads answer its new images too
    "classifier.services.drift.run_drift_features",
]
# Drift (classifier.services.drift): the new images of a Run against the model's reference (up to
# DRIFT_REFERENCE_SIZE live images of other advertisers that the active image_type version classified; no measure
# under DRIFT_REFERENCE_MIN), by the mean cosine distance to their DRIFT_NEIGHBOURS nearest reference images on the
# cached penultimate features. Unfamiliar: above the DRIFT_QUANTILE quantile of the reference's own distances.
# At most DRIFT_SAMPLE new images a Run are measured; the Run is flagged `drift` when a share of at least
# DRIFT_SHARE of them, and at least DRIFT_MIN_IMAGES, are unfamiliar. Measured on the synthetic styles (README): with
# 300 to 1,000 reference images, 11-19% of usual new images are unfamiliar and 43-77% of the drifted style's.
DRIFT_REFERENCE_SIZE = int(os.environ.get("DRIFT_REFERENCE_SIZE", "1000"))
DRIFT_REFERENCE_MIN = int(os.environ.get("DRIFT_REFERENCE_MIN", "300"))
DRIFT_NEIGHBOURS = int(os.environ.get("DRIFT_NEIGHBOURS", "10"))
DRIFT_QUANTILE = float(os.environ.get("DRIFT_QUANTILE", "0.8"))
DRIFT_SAMPLE = int(os.environ.get("DRIFT_SAMPLE", "300"))
DRIFT_SHARE = float(os.environ.get("DRIFT_SHARE", "0.3"))
DRIFT_MIN_IMAGES = int(os.environ.get("DRIFT_MIN_IMAGES", "20"))
# A near-duplicate (a fix is carried to it; clusters): pHash within this many bits AND color signature within this
# delta E (catalog.services.clusters.near_duplicates). Measured (`manage.py measure_near_duplicates`, README): copies
# within 2 bits and 2.3 dE; the same render in another paint from 0 bits but 8.2 dE or more.
CARRY_FORWARD_MAX_DISTANCE = int(os.environ.get("CARRY_FORWARD_MAX_DISTANCE", "10"))
CARRY_FORWARD_MAX_COLOR_DISTANCE = float(os.environ.get("CARRY_FORWARD_MAX_COLOR_DISTANCE", "5"))
REUSED_PICTURE_LISTINGS = int(os.environ.get("REUSED_PICTURE_LISTINGS", "5"))  # one picture in N+ listings: suspect
# The audit sample (reviews.audit): this share of each advertiser's images, per task, picked by a stable hash, enters
# the review queue as "audit" whatever the model's confidence; local accuracy measured on it is unbiased.
QUEUE_AUDIT_RATE = float(os.environ.get("QUEUE_AUDIT_RATE", "0.02"))
# The review queue's model-side questions (unfamiliar, hesitated) ask this many images of one near-duplicate cluster
# before every other cluster has had its turn (reviews.health.queue).
QUEUE_PER_CLUSTER = int(os.environ.get("QUEUE_PER_CLUSTER", "1"))
# The loop proposes itself (reviews.services.retrain): the nightly beat job retrains a task (export, candidates,
# the best one's shadow pass, an email to staff) once it has this many new human labels since its last training.
RETRAIN_MIN_NEW_LABELS = int(os.environ.get("RETRAIN_MIN_NEW_LABELS", "100"))
# An advertiser the best global candidate leaves under this accuracy on the export's test split (with at least
# RETRAIN_SCOPED_MIN_TEST reviewed test images) also gets heads of its own from the retrain (0: never).
RETRAIN_SCOPED_BELOW = float(os.environ.get("RETRAIN_SCOPED_BELOW", "0.95"))
RETRAIN_SCOPED_MIN_TEST = int(os.environ.get("RETRAIN_SCOPED_MIN_TEST", "10"))
CLASSIFY_BATCH_SIZE = int(os.environ.get("CLASSIFY_BATCH_SIZE", "32"))
# The training guard (reviews.exports training_manifest): per advertiser with live images, up to this many of its
# confident model tags that no human labelled, on which every candidate's flips are counted.
LOOP_GUARD_SAMPLE = int(os.environ.get("LOOP_GUARD_SAMPLE", "300"))
# Inline classification (run_sitemap --sync, benchmarks) runs its batches in this many processes, one per core
# like the inference workers; 1 keeps it in the calling process.
CLASSIFY_INLINE_PROCESSES = int(os.environ.get("CLASSIFY_INLINE_PROCESSES", str(os.cpu_count() or 1)))
# Memory per process (catalog.imaging): the decoded pixels the fetch threads of one process hold at once. An RGBA
# pixel is 4 bytes, so 64 MP is ~256 MB at most, whatever the images (a pixel flood of 60 MP PNGs included).
IMAGE_DECODE_BUDGET_PIXELS = int(os.environ.get("IMAGE_DECODE_BUDGET_PIXELS", "64000000"))
# Faults (catalog.tasks.RunLeaseCheck, classifier.services.pipeline): every worker checks the Runs' leases on a
# timer of its own, not a queued task that a broker restart could lose; beat's sweep is the second line. The
# hand-over to the inference queue retries a broker that is down this many times (1, 3, 5, 7, 9, 10 s apart).
RUN_LEASE_CHECK_SECONDS = float(os.environ.get("RUN_LEASE_CHECK_SECONDS", "5"))
RUN_HANDOVER_RETRIES = int(os.environ.get("RUN_HANDOVER_RETRIES", "6"))

# Notifications (notifications/): a Run whose health flags include one of NOTIFY_FLAG_CODES notifies the addresses and
# webhooks set in the admin (per advertiser, or global). Mail goes through Django's mail: the console backend unless
# EMAIL_BACKEND says otherwise (smtp: EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS).
# Webhooks are signed JSON POSTs sent through the safe fetcher; a transient failure is retried NOTIFY_MAX_RETRIES
# times, NOTIFY_RETRY_BACKOFF seconds apart at first, doubling each time (at most an hour).
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "30"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "imagetagger <imagetagger@localhost>")
# The screens' address as people reach it: links in notifications (the Run page).
SITE_URL = os.environ.get("IMAGETAGGER_SITE_URL", "http://localhost:8000").rstrip("/")
NOTIFY_FLAG_CODES = env_list("NOTIFY_FLAG_CODES", "failures_jump,ml_failed,cdn_changed,drift")
NOTIFY_MAX_RETRIES = int(os.environ.get("NOTIFY_MAX_RETRIES", "5"))
NOTIFY_RETRY_BACKOFF = float(os.environ.get("NOTIFY_RETRY_BACKOFF", "30"))
NOTIFY_WEBHOOK_TIMEOUT = float(os.environ.get("NOTIFY_WEBHOOK_TIMEOUT", "10"))
