"""All settings, read from the environment.

Embedded mode (no DATABASE_URL, no CELERY_BROKER_URL): SQLite and a filesystem Celery broker under
``var/``, a generated development SECRET_KEY, the offline ``sim`` providers. Anything else is
production-like: SECRET_KEY must be given.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from hilapp.settings.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("HILAPP_VAR_DIR") or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)

# --- Database -----------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'hilapp.sqlite3'}"
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))
except ValueError as exc:  # unknown scheme
    raise ImproperlyConfigured(f"DATABASE_URL={DATABASE_URL!r}: {exc}") from exc
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and scheduler share one file: WAL lets readers run beside the writer, and
    # IMMEDIATE transactions take the write lock up front so transitions serialize, not deadlock.
    _db["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
IS_POSTGRES = _db["ENGINE"].startswith("django.db.backends.postgresql")
# A connection pool per process (psycopg_pool), for processes with many threads (the api
# worker, gunicorn threads): threads share DB_POOL_MAX_SIZE connections instead of holding one
# each, and a model call hands its connection back while it waits on the network. 0: no pool.
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 0, minimum=0)
if IS_POSTGRES and DB_POOL_MAX_SIZE:
    _db["CONN_MAX_AGE"] = 0  # the pool keeps the connections
    _db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": env_float("DB_POOL_TIMEOUT_S", 30.0, minimum=1.0),
    }
if IS_POSTGRES:
    # A worker runs the same few dozen statements thousands of times (a step's claim, its
    # ledger row, its transition). With the parameters bound on the server, psycopg prepares a
    # statement on its connection once it has run 5 times (psycopg's default, which Django
    # turns off), and PostgreSQL then skips parsing and planning it: about a third less
    # PostgreSQL CPU per model call (benchmarks/paper_scale.py). A connection, pooled or kept,
    # holds its prepared statements for its life.
    _db.setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Celery -------------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
IS_EMBEDDED_BROKER = CELERY_BROKER_URL.startswith("filesystem://")
if IS_EMBEDDED_BROKER:
    _broker_dir = VAR_DIR / "broker"
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged only after it ran, so a killed worker's message is delivered again; the
# services are idempotent (guarded transitions), so a second delivery does nothing harmful.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fix-up closes every database connection before and after each task unless it
# may reuse them, and a new PostgreSQL connection per task cost a worker more CPU than the
# task's own queries. It may reuse them; hilapp.celery closes one as Django does after a
# request instead: past DB_CONN_MAX_AGE, or once an error left it unusable.
CELERY_DB_REUSE_MAX = 1_000_000
HILAPP_RECONCILE_EVERY_S = env_float("HILAPP_RECONCILE_EVERY_S", 30.0, minimum=1.0)
HILAPP_LEASE_S = env_float("HILAPP_LEASE_S", 300.0, minimum=1.0)
# Where API export jobs write (default: VAR_DIR/exports; see synthesis.export.jobs).
HILAPP_EXPORT_DIR = env_str("HILAPP_EXPORT_DIR")
# Threads of a dataset export that read and check images through the storage API; on S3
# they overlap the requests' latency.
HILAPP_EXPORT_READERS = env_int("HILAPP_EXPORT_READERS", 16, minimum=1)
# Redis for the cross-worker rate limiter and circuit breaker; process-local when unset.
HILAPP_REDIS_URL = env_str("HILAPP_REDIS_URL") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else None
)

# --- Security -----------------------------------------------------------------------------------
IS_EMBEDDED = _db["ENGINE"] == "django.db.backends.sqlite3" and IS_EMBEDDED_BROKER
DEBUG = env_bool("DEBUG", IS_EMBEDDED)


def _dev_secret_key() -> str:
    path = VAR_DIR / "dev-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY") or ""
if not SECRET_KEY:
    if not (IS_EMBEDDED or DEBUG or env_bool("HILAPP_TESTING", False)):
        raise ImproperlyConfigured(
            "SECRET_KEY is required when not running on the embedded defaults "
            "(DATABASE_URL or CELERY_BROKER_URL is set)."
        )
    SECRET_KEY = _dev_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# HTTPS: on by default whenever DEBUG is off, so a production site gets secure cookies, the
# redirect and HSTS without asking; a site served over plain HTTP (a private network, a test)
# says HILAPP_HTTPS=0. Each setting below can still be set on its own.
HILAPP_HTTPS = env_bool("HILAPP_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HILAPP_HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", HILAPP_HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", HILAPP_HTTPS)
# HSTS starts at an hour (browsers remember it; raise it once HTTPS is known to work).
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 3600 if HILAPP_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients):
# without it, Django sees plain HTTP and SECURE_SSL_REDIRECT would loop.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("HILAPP_PROXY_SSL_HEADER", False) else None
)

# --- Django -------------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served locally: the docs work offline
    "hilapp",
    "synthesis",
    "review",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Body size, JSON depth, UTF-8 and NUL checks, login lockouts: before anything reads the body.
    "hilapp.limits.RequestLimitsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files, hashed and compressed
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "hilapp.urls"
WSGI_APPLICATION = "hilapp.wsgi.application"
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
                "hilapp.roles.role_context",
            ]
        },
    }
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
# One date format on every page (hilapp/formats/en/formats.py: Y-m-d H:i).
FORMAT_MODULE_PATH = ["hilapp.formats"]
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# ``collectstatic`` writes here (the release process, or an image build); the web process reads.
STATIC_ROOT = Path(env_str("STATIC_ROOT") or VAR_DIR / "staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or VAR_DIR / "media")
# Media URLs are signed and expire (hilapp.media): local files through Django's signed view
# (or nginx's X-Accel-Redirect), S3 through the bucket's presigned URLs.
HILAPP_MEDIA_URL_TTL_S = env_int("HILAPP_MEDIA_URL_TTL_S", 3600, minimum=60)
HILAPP_MEDIA_X_ACCEL_PREFIX = env_str("HILAPP_MEDIA_X_ACCEL_PREFIX") or ""
_LOCAL_MEDIA = "hilapp.media.SignedFileSystemStorage"
_S3_MEDIA = "storages.backends.s3.S3Storage"
MEDIA_STORAGE_BACKEND = env_str("MEDIA_STORAGE_BACKEND") or _LOCAL_MEDIA
if MEDIA_STORAGE_BACKEND in (_LOCAL_MEDIA, "django.core.files.storage.FileSystemStorage"):
    MEDIA_STORAGE_BACKEND = _LOCAL_MEDIA  # the plain class's URLs would not be signed
    _media_storage: dict[str, object] = {"BACKEND": _LOCAL_MEDIA}
elif MEDIA_STORAGE_BACKEND == _S3_MEDIA:
    if not env_str("AWS_STORAGE_BUCKET_NAME"):
        raise ImproperlyConfigured(
            f"MEDIA_STORAGE_BACKEND={_S3_MEDIA} needs AWS_STORAGE_BUCKET_NAME (the bucket's name)"
        )
    _media_storage = {
        "BACKEND": "hilapp.s3.S3MediaStorage",  # S3Storage, always presigned
        "OPTIONS": {
            "bucket_name": env_str("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or None,
            "public_endpoint_url": env_str("AWS_S3_PUBLIC_ENDPOINT_URL") or None,
            "region_name": env_str("AWS_S3_REGION_NAME") or None,
            # Unset keys: boto3's own chain (instance role, ~/.aws) finds credentials.
            "access_key": env_str("AWS_ACCESS_KEY_ID") or None,
            "secret_key": env_str("AWS_SECRET_ACCESS_KEY") or None,
            "addressing_style": env_str("AWS_S3_ADDRESSING_STYLE") or None,
            # Tries per request (botocore's name for it), then StorageUnavailable (hilapp.s3).
            "max_attempts": env_int("AWS_MAX_ATTEMPTS", 10, minimum=1),
            "signature_version": "s3v4",
            "location": env_str("AWS_LOCATION") or "",
            "querystring_auth": True,
            "querystring_expire": HILAPP_MEDIA_URL_TTL_S,
            "default_acl": None,  # objects stay private: only presigned URLs read them
            # Names are content-addressed: a second write of a name writes the same bytes.
            "file_overwrite": True,
        },
    }
else:
    raise ImproperlyConfigured(
        f"MEDIA_STORAGE_BACKEND={MEDIA_STORAGE_BACKEND!r}: use {_LOCAL_MEDIA} (local files, the "
        f"default) or {_S3_MEDIA} (an S3-compatible bucket); media URLs must be signed"
    )
STORAGES = {
    "default": _media_storage,
    # Hashed, compressed names when DEBUG is off (needs ``collectstatic``, served by WhiteNoise
    # with far-future caching); plain names in DEBUG, where runserver finds the files itself.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 25 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "hilapp.tokens.HashedTokenAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["hilapp.throttling.RoleRateThrottle"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "hilapp API",
    "DESCRIPTION": "Approved characters, stories and frames; review; exports; batches.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Two apps name a status enum "Status"; give the review one its own component name.
    "ENUM_NAME_OVERRIDES": {"ReviewItemStatusEnum": "review.models.ItemStatus"},
    # Swagger UI and ReDoc from drf-spectacular-sidecar's static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# httpx2 and httpcore2: the HTTP stack of the installed openai and google-genai SDKs.
SDK_HTTP_LOGGERS = ("httpx", "httpcore", "httpx2", "httpcore2")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"redact": {"()": "hilapp.secrets_filter.RedactingLogFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL") or "INFO"},
    # The SDKs' HTTP clients log every request at INFO: one line per model call, hundreds a
    # second on an api worker, each written under the handler's lock. The ledger (ModelCall)
    # records every call; their warnings and errors still show.
    "loggers": {name: {"level": "WARNING"} for name in SDK_HTTP_LOGGERS},
}

# --- Pipeline -----------------------------------------------------------------------------------
HILAPP_VIESCORE_THRESHOLD = env_float("HILAPP_VIESCORE_THRESHOLD", 7.0, minimum=0, maximum=10)
HILAPP_FRAME_MAX_ATTEMPTS = env_int("HILAPP_FRAME_MAX_ATTEMPTS", 3, minimum=1)
HILAPP_REFERENCE_MAX_ATTEMPTS = env_int("HILAPP_REFERENCE_MAX_ATTEMPTS", 5, minimum=1)
HILAPP_SCRIPT_MAX_REPAIRS = env_int("HILAPP_SCRIPT_MAX_REPAIRS", 2, minimum=0)
HILAPP_STORY_MIN_FRAMES = env_int("HILAPP_STORY_MIN_FRAMES", 7, minimum=1)
HILAPP_STORY_MAX_FRAMES = env_int("HILAPP_STORY_MAX_FRAMES", 12, minimum=1)
# On: Phase III starts as soon as HV2 approves a story. Off: approved stories wait for an admin
# to launch a frame-synthesis run (its own budget and provider mix).
HILAPP_PHASE3_AUTOSTART = env_bool("HILAPP_PHASE3_AUTOSTART", True)
# How often a provider call whose answer cannot be parsed is asked again before it fails.
HILAPP_PARSE_RETRIES = env_int("HILAPP_PARSE_RETRIES", 2, minimum=0)
HILAPP_TRANSIENT_RETRIES = env_int("HILAPP_TRANSIENT_RETRIES", 4, minimum=0)
HILAPP_RETRY_BASE_S = env_float("HILAPP_RETRY_BASE_S", 1.0, minimum=0)
HILAPP_RETRY_MAX_S = env_float("HILAPP_RETRY_MAX_S", 60.0, minimum=0)
HILAPP_TEMPLATE_SIZE = env_int("HILAPP_TEMPLATE_SIZE", 1024, minimum=64)
HILAPP_FRAME_SIZE = env_int("HILAPP_FRAME_SIZE", 1024, minimum=64)
# The share of gate-approved frames also sent to experts (the audit stage), 0 to 1.
HILAPP_AUDIT_RATE = env_float("HILAPP_AUDIT_RATE", 0.05, minimum=0, maximum=1)
HILAPP_REVIEW_LEASE_S = env_float("HILAPP_REVIEW_LEASE_S", 600.0, minimum=5.0)

# --- Providers ----------------------------------------------------------------------------------
OPENAI_API_KEY = env_str("OPENAI_API_KEY") or ""
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL") or None
GEMINI_API_KEY = env_str("GEMINI_API_KEY") or env_str("GOOGLE_API_KEY") or ""
GEMINI_BASE_URL = env_str("GEMINI_BASE_URL") or None
DIFFUSERS_FLUX_PATH = env_str("DIFFUSERS_FLUX_PATH") or ""
DIFFUSERS_QWEN_EDIT_PATH = env_str("DIFFUSERS_QWEN_EDIT_PATH") or ""
PROVIDER_TIMEOUT_S = env_float("PROVIDER_TIMEOUT_S", 120.0, minimum=1.0)
# HTTP connections per SDK client and worker process: at least the calls a worker keeps in
# flight (the api worker's concurrency), or calls queue for a connection.
PROVIDER_MAX_CONNECTIONS = env_int("PROVIDER_MAX_CONNECTIONS", 256, minimum=1)

# Role -> weighted "provider:model" entries, e.g.
#   HILAPP_ROLE_PLANNER="openai:gpt-4o=1,gemini:gemini-2.5-pro=1"
# Unset roles take the defaults of synthesis.providers.routing (the paper's mix when keys are
# set, the offline simulator otherwise).
HILAPP_ROLE_OVERRIDES = {
    role: value
    for role in (
        "planner",
        "judge",
        "arbitrator",
        "character_renderer",
        "reference_editor",
        "frame_synthesizer",
        "local_editor",
    )
    if (value := env_str(f"HILAPP_ROLE_{role.upper()}"))
}

# The offline simulator: fault rates as "kind=rate,..." (kinds: synthesis.providers.sim.FAULTS).
HILAPP_SIM_FAULTS = env_str("HILAPP_SIM_FAULTS") or ""
HILAPP_SIM_LATENCY_MS = env_float("HILAPP_SIM_LATENCY_MS", 0.0, minimum=0)
HILAPP_PRICE_OVERRIDES = env_str("HILAPP_PRICES") or ""

# >>> Provider limits and local GPU models (issue 5: synthesis/providers/limits.py, diffusers.py)
# Requests/tokens per minute per provider, shared by all workers via HILAPP_REDIS_URL, e.g.
#   HILAPP_RATE_LIMITS="openai=500/800000,gemini=300/1000000"  (0 or empty: no limit on that axis)
HILAPP_RATE_LIMITS = env_str("HILAPP_RATE_LIMITS") or ""
# Circuit breaker: this many consecutive transient failures take a provider:model out of routing
# for the cool-down.
HILAPP_CIRCUIT_FAILURES = env_int("HILAPP_CIRCUIT_FAILURES", 5, minimum=1)
HILAPP_CIRCUIT_COOLDOWN_S = env_float("HILAPP_CIRCUIT_COOLDOWN_S", 60.0, minimum=0)
# Diffusers (gpu queue): denoising steps and guidance (0: the pipeline's default guidance), and
# the micro-batcher that merges concurrent same-shape requests into one pipeline call.
DIFFUSERS_STEPS = env_int("DIFFUSERS_STEPS", 28, minimum=1)
DIFFUSERS_GUIDANCE = env_float("DIFFUSERS_GUIDANCE", 0.0, minimum=0)
DIFFUSERS_MAX_BATCH = env_int("DIFFUSERS_MAX_BATCH", 4, minimum=1)
DIFFUSERS_MAX_WAIT_MS = env_float("DIFFUSERS_MAX_WAIT_MS", 50.0, minimum=0)
# Optimisation profile of a gpu worker (issue 16, synthesis/providers/diffusers_profiles.py):
# plain | lossless (compiled, fused QKV, best attention kernel) | fast (lossless + float8).
# Compiled profiles warm up these sizes ("WxH", and for edits these input-image counts) before
# the worker consumes; kernels are kept in the compile cache across restarts.
DIFFUSERS_PROFILE = env_choice("DIFFUSERS_PROFILE", "plain", {"plain", "lossless", "fast"})
DIFFUSERS_COMPILE_MODE = env_choice(
    "DIFFUSERS_COMPILE_MODE",
    "default",
    {"default", "max-autotune-no-cudagraphs", "max-autotune", "reduce-overhead"},
)
DIFFUSERS_WARMUP_SIZES = env_list("DIFFUSERS_WARMUP_SIZES", ["1024x1024"])
DIFFUSERS_WARMUP_EDIT_INPUTS = env_list("DIFFUSERS_WARMUP_EDIT_INPUTS", ["1"])
DIFFUSERS_COMPILE_CACHE_DIR = env_str("DIFFUSERS_COMPILE_CACHE_DIR") or str(
    VAR_DIR / "inductor-cache"
)
# <<< Provider limits and local GPU models

# >>> Hardening (issue 13: hilapp/limits.py, throttling.py, tokens.py, secrets_filter.py)
# Request limits (hilapp.limits): every body but uploads, multipart uploads, JSON nesting.
HILAPP_MAX_BODY_BYTES = env_int("HILAPP_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
HILAPP_MAX_UPLOAD_BYTES = env_int("HILAPP_MAX_UPLOAD_BYTES", 21 * 1024 * 1024, minimum=1024)
HILAPP_MAX_JSON_DEPTH = env_int("HILAPP_MAX_JSON_DEPTH", 20, minimum=2)
# Lockouts (hilapp.throttling): wrong passwords per account / per client address, wrong API
# tokens per address, within and for HILAPP_LOGIN_LOCKOUT_S seconds.
HILAPP_LOGIN_FAILURES = env_int("HILAPP_LOGIN_FAILURES", 5, minimum=1)
HILAPP_LOGIN_ADDRESS_FAILURES = env_int("HILAPP_LOGIN_ADDRESS_FAILURES", 20, minimum=1)
HILAPP_TOKEN_FAILURES = env_int("HILAPP_TOKEN_FAILURES", 20, minimum=1)
HILAPP_LOGIN_LOCKOUT_S = env_float("HILAPP_LOGIN_LOCKOUT_S", 900.0, minimum=1.0)
# Proxies in front of the web processes that append to X-Forwarded-For (0: use REMOTE_ADDR).
HILAPP_TRUSTED_PROXIES = env_int("HILAPP_TRUSTED_PROXIES", 0, minimum=0)


def _env_rate(name: str, default: str) -> str:
    """DRF's ``N/second|minute|hour|day``; empty or 0 turns the limit off."""
    raw = (env_str(name) or default).strip()
    if raw in ("", "0"):
        return ""
    count, _, period = raw.partition("/")
    if not count.isdigit() or int(count) < 1 or period[:1] not in ("s", "m", "h", "d"):
        raise ImproperlyConfigured(f"{name}={raw!r}: expected N/second|minute|hour|day or 0")
    return raw


# API requests per role (hilapp.throttling.RoleRateThrottle); 429 with Retry-After beyond.
HILAPP_THROTTLE_RATES = {
    role: rate
    for role, default in (
        ("anon", "60/minute"),
        ("user", "120/minute"),
        ("consumer", "1200/minute"),
        ("expert", "600/minute"),
        ("admin", "1200/minute"),
    )
    if (rate := _env_rate(f"HILAPP_THROTTLE_{role.upper()}", default))
}
# Throttle and lockout state is shared by every web process through Redis in production; the
# embedded mode's single web process keeps it in memory.
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": HILAPP_REDIS_URL}
        if HILAPP_REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
# Debug pages and error reports redact URL passwords and every *_KEY / *_SECRET* / token.
DEFAULT_EXCEPTION_REPORTER_FILTER = "hilapp.secrets_filter.SecretsReporterFilter"
DEFAULT_EXCEPTION_REPORTER = "hilapp.secrets_filter.SecretsExceptionReporter"
# <<< Hardening
