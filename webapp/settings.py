"""Settings for lungscope.

Embedded defaults: without ``DATABASE_URL`` the app uses SQLite in ``var/``; without ``CELERY_BROKER_URL`` Celery
uses kombu's filesystem transport in ``var/celery`` so the demo needs no server (``make demo`` starts a worker
process beside the web server). With them set (docker-compose, the tests) it uses PostgreSQL and Redis.
"""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import dj_database_url
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent

# The test suite runs against the real services (PostgreSQL, Redis) by default. pytest-django loads these settings
# before any conftest runs, so the defaults are set here; an exported variable still wins.
if "pytest" in sys.modules:
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/lungscope")
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
    os.environ.setdefault("LUNGSCOPE_VAR_DIR", str(BASE_DIR / "var" / "test"))
    os.environ.setdefault("LUNGSCOPE_ANALYZE_ON_INGEST", "false")
    os.environ.setdefault("LUNGSCOPE_REGISTER_SHIPPED_MODEL", "false")  # tests register the bundles they analyse with
    # A key of this run's own (servers and commands the tests start inherit it), and plain HTTP for the test client,
    # the live server and the browser; DEBUG stays off.
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("LUNGSCOPE_PLAIN_HTTP", "true")
    os.environ.setdefault("LUNGSCOPE_STABLE_STUDY_S", "1")
    # Concurrent test sessions on one machine each get their own test database and broker keys.
    os.environ.setdefault("LUNGSCOPE_TEST_RUN_ID", str(os.getpid()))

VAR_DIR = Path(os.environ.get("LUNGSCOPE_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


# Off unless asked for (DJANGO_DEBUG=1): with it on, Django's error pages show settings and the URL configuration.
DEBUG = env_bool("DJANGO_DEBUG", False)
# The secret key is never a known constant: DJANGO_SECRET_KEY, or the random one `make demo` writes to var/secret_key.
SECRET_KEY_FILE = VAR_DIR / "secret_key"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or (
    SECRET_KEY_FILE.read_text().strip() if SECRET_KEY_FILE.is_file() else "")
if not SECRET_KEY:
    raise RuntimeError(f"DJANGO_SECRET_KEY must be set (or {SECRET_KEY_FILE} exist, as `make demo` writes it)")
# Plain HTTP (the demo and the tests on 127.0.0.1): cookies without Secure, no HTTPS redirect, no HSTS.
PLAIN_HTTP = DEBUG or env_bool("LUNGSCOPE_PLAIN_HTTP", False)
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from static: /api/docs/ works offline
    "webapp.accounts",
    "webapp.jobs",
    "webapp.studies",
    "webapp.analysis",
    "webapp.review",
    "webapp.curation",
    "webapp.registry",
    "webapp.retraining",
    "webapp.dicomnode",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "webapp.middleware.RequestSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "webapp.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "webapp" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = "webapp.wsgi.application"

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'lungscope.sqlite3'}", conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60"))
    )
}
if os.environ.get("LUNGSCOPE_TEST_RUN_ID"):
    DATABASES["default"]["TEST"] = {"NAME": f"test_lungscope_{os.environ['LUNGSCOPE_TEST_RUN_ID']}"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "worklist"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "webapp" / "static"]
MEDIA_ROOT = Path(os.environ.get("LUNGSCOPE_STORAGE_DIR", VAR_DIR / "storage"))
STORAGES = {
    # DICOM files, maps and exports. Local disk by default; set LUNGSCOPE_STORAGE_BACKEND to
    # "storages.backends.s3.S3Storage" (plus the AWS_* variables django-storages reads) for object storage.
    "default": {"BACKEND": os.environ.get("LUNGSCOPE_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_MIMETYPES = {".wasm": "application/wasm"}

# Upload limits (bytes / files). Zip extraction applies its own guards (webapp/studies/archives.py).
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = 5000
LUNGSCOPE_MAX_UPLOAD_BYTES = int(os.environ.get("LUNGSCOPE_MAX_UPLOAD_BYTES", 2 * 1024**3))
LUNGSCOPE_ZIP_MAX_FILES = int(os.environ.get("LUNGSCOPE_ZIP_MAX_FILES", 20000))
LUNGSCOPE_ZIP_MAX_BYTES = int(os.environ.get("LUNGSCOPE_ZIP_MAX_BYTES", 8 * 1024**3))
LUNGSCOPE_ZIP_MAX_RATIO = int(os.environ.get("LUNGSCOPE_ZIP_MAX_RATIO", 200))

# Real CT data for tests and benchmarks, beside the repository (never committed).
LUNGSCOPE_SHARED_DATA = Path(os.environ.get("LUNGSCOPE_SHARED_DATA", BASE_DIR.parent / "shared" / "data"))

# Inference: the active model bundle (a name under models/ or a path) and when to analyse.
LUNGSCOPE_MODEL = os.environ.get("LUNGSCOPE_MODEL", "default")
LUNGSCOPE_ANALYZE_ON_INGEST = env_bool("LUNGSCOPE_ANALYZE_ON_INGEST", True)
# A study is analysed once no instance has arrived for this many seconds (Orthanc's StableAge), however it came.
LUNGSCOPE_STABLE_STUDY_S = float(os.environ.get("LUNGSCOPE_STABLE_STUDY_S", 10))
LUNGSCOPE_SALIENCY = os.environ.get("LUNGSCOPE_SALIENCY", "positive")  # all | positive | none
LUNGSCOPE_DEVICE = os.environ.get("LUNGSCOPE_DEVICE", "auto")
# `migrate` registers LUNGSCOPE_MODEL as the registry's first, active version (webapp/registry/apps.py).
LUNGSCOPE_REGISTER_SHIPPED_MODEL = env_bool("LUNGSCOPE_REGISTER_SHIPPED_MODEL", True)
# The DICOM listener (``manage.py dicom_listener``) and the AE title results are sent from.
LUNGSCOPE_DICOM_AE_TITLE = os.environ.get("LUNGSCOPE_DICOM_AE_TITLE", "LUNGSCOPE")
LUNGSCOPE_DICOM_HOST = os.environ.get("LUNGSCOPE_DICOM_HOST", "0.0.0.0")
LUNGSCOPE_DICOM_PORT = int(os.environ.get("LUNGSCOPE_DICOM_PORT", 11112))
# Seconds before the first retry of a failed send to PACS; each further retry waits twice as long.
LUNGSCOPE_DICOM_SEND_BACKOFF_S = float(os.environ.get("LUNGSCOPE_DICOM_SEND_BACKOFF_S", 5))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"login": "10/min"},
    "EXCEPTION_HANDLER": "webapp.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "lungscope API",
    "DESCRIPTION": "Chest CT review: studies, AI analyses, findings, reviews, curation and the model registry.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],  # login required everywhere
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",  # from drf-spectacular-sidecar's static files, not a CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models call their choices "Status"; name each set so the schema's enums are stable.
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "webapp.jobs.models.Job.Status",  # TrainingRun.Status has the same values
        "StudyStatusEnum": "webapp.studies.models.Study.Status",
        "AnalysisRunStatusEnum": "webapp.analysis.models.AnalysisRun.Status",
    },
}

# Celery: queues default (ingest, exports) and gpu (inference, training).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _celery_dir = VAR_DIR / "celery"
    for _sub in ("queue", "processed", "control"):
        (_celery_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "queue"),
        "data_folder_out": str(_celery_dir / "queue"),
        "processed_folder": str(_celery_dir / "processed"),
        "control_folder": str(_celery_dir / "control"),  # broadcast exchanges; kombu's default is ./control
        "store_processed": False,
    }
else:
    # A task unacknowledged for this long is redelivered; longer than any analysis or training step.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 3600))}
    if os.environ.get("LUNGSCOPE_TEST_RUN_ID"):
        CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = f"test{os.environ['LUNGSCOPE_TEST_RUN_ID']}:"
# The cache holds login-failure counters, so every web process must share it: Redis when there is one.
_CACHE_URL = os.environ.get("LUNGSCOPE_CACHE_URL") or (CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else "")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_URL,
                "KEY_PREFIX": f"lungscope{os.environ.get('LUNGSCOPE_TEST_RUN_ID', '')}"}
    if _CACHE_URL else
    {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(VAR_DIR / "cache")}
}

CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = (Queue("default"), Queue("gpu"))
CELERY_TASK_ROUTES = {
    "webapp.analysis.tasks.*": {"queue": "gpu"},
    "webapp.retraining.tasks.*": {"queue": "gpu"},
}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if not PLAIN_HTTP:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", 31536000))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
