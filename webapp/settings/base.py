"""Settings every flavour shares: ``demo`` (``make demo``; manage.py, the WSGI app and Celery default to it),
``test`` (pytest) and ``production`` (the Docker image). Each flavour imports these and sets the secret key, the
database, the broker and the cache with the functions below.

Everything here reads the environment and nothing else: no default database or broker, no secret key, no folder
created, whatever else is imported in the process.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent

VAR_DIR = Path(os.environ.get("LUNGSCOPE_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


# Off unless asked for (DJANGO_DEBUG=1): with it on, Django's error pages show settings and the URL configuration.
DEBUG = env_bool("DJANGO_DEBUG", False)
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
    "DEFAULT_PAGINATION_CLASS": "webapp.api.Pagination",
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

# Celery: queues default (ingest, exports) and gpu (inference, training); the broker is the flavour's.
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


def secret_key(key_file: Path | None = None) -> str:
    """``DJANGO_SECRET_KEY``, else the contents of ``key_file`` (the demo's random key); never a known constant, so
    without either nothing starts."""
    key = os.environ.get("DJANGO_SECRET_KEY") or (
        key_file.read_text().strip() if key_file is not None and key_file.is_file() else "")
    if not key:
        where = f" (or {key_file} exist, as `make demo` writes it)" if key_file is not None else ""
        raise RuntimeError(f"DJANGO_SECRET_KEY must be set{where}")
    return key


def database(default_url: str | None = None) -> dict[str, Any]:
    """The database of ``DATABASE_URL`` (else ``default_url``; with neither, none: Django refuses the first query)."""
    return dj_database_url.config(default=default_url, conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")))


def broker_transport_options(key_prefix: str = "") -> dict[str, Any]:
    """A network broker's options: a task unacknowledged for this long is redelivered (longer than any analysis or
    training step); ``key_prefix`` keeps one broker's keys per test session."""
    options: dict[str, Any] = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 3600))}
    if key_prefix:
        options["global_keyprefix"] = key_prefix
    return options


def caches(broker_url: str, key_prefix: str = "lungscope") -> dict[str, Any]:
    """The cache holds login-failure counters, so every web process must share it: Redis when there is one (the
    broker's, or ``LUNGSCOPE_CACHE_URL``; keys under ``key_prefix``), else files in ``VAR_DIR/cache`` (written on
    first use)."""
    url = os.environ.get("LUNGSCOPE_CACHE_URL") or (broker_url if broker_url.startswith("redis") else "")
    if url:
        return {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
                            "KEY_PREFIX": key_prefix}}
    return {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                        "LOCATION": str(VAR_DIR / "cache")}}
