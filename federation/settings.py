"""Configuration, read from the environment only (SPEC §3.1). Code reads django.conf.settings."""

from __future__ import annotations

import os
import re
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = _env_bool("DEBUG")
# Demo mode mounts the development IdP and the local federation stand-in; never in production.
DEMO_MODE = _env_bool("DEMO_MODE")

TESTING = "pytest" in sys.modules

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY and TESTING:
    import secrets

    SECRET_KEY = secrets.token_urlsafe(50)
if not SECRET_KEY:
    if not (DEBUG or DEMO_MODE):
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable to a long random "
            "value (or DEBUG=1 for local development only)."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-or-DEMO_MODE"  # noqa: S105

# Key for OIDC client secrets sealed at rest; empty means derive it from SECRET_KEY.
OIDC_SECRET_KEY = os.environ.get("OIDC_SECRET_KEY", "")

BASE_URL = os.environ.get("BASE_URL", "http://127.0.0.1:8000").rstrip("/")
_base = urlsplit(BASE_URL)
if _base.scheme not in {"http", "https"} or not _base.hostname:
    raise ImproperlyConfigured(f"BASE_URL must be an absolute http(s) URL, got {BASE_URL!r}.")
SECURE_TRANSPORT = _base.scheme == "https"

ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS") or [_base.hostname, "127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "federation",
    "access_requests",
]

MIDDLEWARE = [
    "federation.edge.proxy.TrustedProxyMiddleware",  # first: everything sees the client address
    # Next: every response carries X-Request-ID and every log line of the request its id.
    "federation.observability.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files without a web server in front
    "federation.unavailable.DatabaseUnavailableMiddleware",  # 503 page while the database is down
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "federation.middleware.SecurityHeadersMiddleware",
    # Inside the headers middleware, so its redirect to sign-in carries them too.
    "federation.middleware.SessionLimitsMiddleware",
    "federation.input_guard.InputGuardMiddleware",
    "federation.edge.ratelimit.RateLimitMiddleware",  # last: it needs the route and the person
]

ROOT_URLCONF = "federation.urls"
WSGI_APPLICATION = "federation.wsgi.application"

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
                "federation.permissions.roles_context",
                "access_requests.views.navigation",
            ],
        },
    },
]

_default_db = f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"
DATABASE_URL = os.environ.get("DATABASE_URL", _default_db)
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that stops answering (not refusing) fails a connection within this many
    # seconds, so pages answer their 503 and /readyz its verdict instead of hanging (issue #17).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", int(os.environ.get("DATABASE_CONNECT_TIMEOUT_SECONDS", "5"))
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    (BASE_DIR / "var").mkdir(exist_ok=True)

AUTH_USER_MODEL = "federation.User"
# ModelBackend with the per-request user read written once (federation/edge/auth.py).
AUTHENTICATION_BACKENDS = ["federation.edge.auth.UserBackend"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", str(BASE_DIR / "var" / "static")))
# Whitenoise serves STATIC_ROOT (scripts/serve runs collectstatic); in development and tests it
# finds files where they are, without collectstatic.
WHITENOISE_AUTOREFRESH = DEBUG or TESTING
WHITENOISE_USE_FINDERS = DEBUG or TESTING

# --- Who administers and audits (SPEC §3.1): directory groups, nobody else.
# The demo's users (seed_demo) carry these groups; a real deployment names its own.
ADMIN_GROUPS = _env_list("ADMIN_GROUPS", "fedaccess-admins" if DEMO_MODE else "")
AUDITOR_GROUPS = _env_list("AUDITOR_GROUPS", "fedaccess-auditors" if DEMO_MODE else "")

# Mapping changes that grant a privileged role or touch prod need a second admin's approval.
MAPPING_CHANGES_NEED_SECOND_ADMIN = _env_bool("MAPPING_CHANGES_NEED_SECOND_ADMIN", True)

# --- Celery: no broker configured means tasks run eagerly in-process (demo).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Bounded publishing (issue #17): a dead or hung broker costs a request about a second, never a
# hang; what it did not take stays in the outbox and the relay sweep publishes it later.
BROKER_TIMEOUT = float(os.environ.get("BROKER_TIMEOUT_SECONDS", "1"))
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_TIMEOUT
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": BROKER_TIMEOUT,
    "socket_timeout": BROKER_TIMEOUT,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# The worker keeps the LOGGING below (its redaction filter) instead of installing its own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {}
# SAML: IdP metadata from a URL is re-read (certificate rollover); expired replay records go.
CELERY_BEAT_SCHEDULE["refresh-saml-metadata"] = {
    "task": "federation.refresh_saml_metadata",
    "schedule": float(os.environ.get("SAML_METADATA_REFRESH_SECONDS", str(6 * 3600))),
}
CELERY_BEAT_SCHEDULE["purge-saml-replay-cache"] = {
    "task": "federation.purge_saml_replay_cache",
    "schedule": 3600.0,
}
# Time-bound access (issue #6): expire on time, and keep retrying owed IAM deny policies.
CELERY_BEAT_SCHEDULE["expire-due-requests-and-grants"] = {
    "task": "access_requests.tasks.expire_due",
    "schedule": float(os.environ.get("ACCESS_EXPIRY_INTERVAL_SECONDS", "60")),
}
CELERY_BEAT_SCHEDULE["retry-owed-revocation-policies"] = {
    "task": "access_requests.tasks.retry_owed_revocations",
    "schedule": 60.0,
}
CELERY_BEAT_SCHEDULE["relay-outbox"] = {
    "task": "access_requests.tasks.relay_outbox",
    "schedule": float(os.environ.get("OUTBOX_RELAY_INTERVAL_SECONDS", "15")),
}
CELERY_BEAT_SCHEDULE["collect-expired-revocation-statements"] = {
    "task": "access_requests.tasks.collect_revocation_policies",
    "schedule": 3600.0,
}

# --- Audit sequencing (docs/audit.md). "batched": writers insert unsequenced events and the
# sequencer (beat task below, or `manage.py audit_sequencer`) numbers them; "inline": each writer
# sequences in its own transaction (one lock per append), the default when no broker runs beat.
AUDIT_SEQUENCING = os.environ.get("AUDIT_SEQUENCING", "batched" if CELERY_BROKER_URL else "inline")
if AUDIT_SEQUENCING not in ("batched", "inline"):
    raise ImproperlyConfigured("AUDIT_SEQUENCING must be 'batched' or 'inline'")
AUDIT_SEQUENCER_BATCH = int(os.environ.get("AUDIT_SEQUENCER_BATCH", "5000"))
# /readyz reports unavailable when the oldest pending event has waited longer than this.
AUDIT_SEQUENCING_LAG_LIMIT = timedelta(
    seconds=float(os.environ.get("AUDIT_SEQUENCING_LAG_LIMIT_SECONDS", "30"))
)
CELERY_BEAT_SCHEDULE["sequence-audit-events"] = {
    "task": "federation.sequence_audit_events",
    "schedule": float(os.environ.get("AUDIT_SEQUENCER_INTERVAL_SECONDS", "1")),
    # A run missed while another holds the lock is worthless a second later.
    "options": {"expires": 5.0},
}

# Signed checkpoints of the chain head (SPEC §3.1): PEM Ed25519 key or its path; file:// or s3://.
AUDIT_SIGNING_KEY = os.environ.get("AUDIT_SIGNING_KEY", "")
AUDIT_CHECKPOINT_URL = os.environ.get("AUDIT_CHECKPOINT_URL", "")
# A checkpoint when the last is this old, or sooner once this many events were added since.
AUDIT_CHECKPOINT_INTERVAL = timedelta(
    seconds=float(os.environ.get("AUDIT_CHECKPOINT_INTERVAL_SECONDS", "3600"))
)
AUDIT_CHECKPOINT_EVERY_EVENTS = int(os.environ.get("AUDIT_CHECKPOINT_EVERY_EVENTS", "100000"))
if AUDIT_CHECKPOINT_URL:
    CELERY_BEAT_SCHEDULE["audit-checkpoint-when-due"] = {
        "task": "federation.audit_checkpoint_when_due",
        "schedule": float(os.environ.get("AUDIT_CHECKPOINT_CHECK_SECONDS", "300")),
    }

# --- Access requests (SPEC §4 Requests).
ACCESS_REQUEST_DECIDE_WITHIN = timedelta(
    minutes=int(os.environ.get("ACCESS_REQUEST_DECIDE_WITHIN_MINUTES", str(24 * 60)))
)
NOTIFICATION_MAX_RETRIES = int(os.environ.get("NOTIFICATION_MAX_RETRIES", "8"))
REVOCATION_MAX_RETRIES = int(os.environ.get("REVOCATION_MAX_RETRIES", "10"))
# The outbox relay: an effect never published after OUTBOX_RELAY_GRACE, or published and not done
# after OUTBOX_REQUEUE_AFTER (message or retries lost), is published again by the sweep.
OUTBOX_RELAY_GRACE = timedelta(seconds=int(os.environ.get("OUTBOX_RELAY_GRACE_SECONDS", "10")))
# After the broker failed to answer, a web process leaves new effects to the sweep for this long.
OUTBOX_PUBLISH_PAUSE = timedelta(seconds=int(os.environ.get("OUTBOX_PUBLISH_PAUSE_SECONDS", "5")))
OUTBOX_REQUEUE_AFTER = timedelta(
    seconds=int(os.environ.get("OUTBOX_REQUEUE_AFTER_SECONDS", str(30 * 60)))
)
# Slack-compatible incoming webhook; unset means no webhook notifications.
SLACK_WEBHOOK_URL = os.environ.get("SLACK_WEBHOOK_URL", "")

# --- Break-glass (SPEC §4). Who else hears of every activation at once: comma-separated email
# addresses and Slack-compatible webhook URLs (https://...), besides the business unit's
# approvers (and SLACK_WEBHOOK_URL). A person may activate at most BREAK_GLASS_MAX_ACTIVATIONS
# times in any BREAK_GLASS_WINDOW_HOURS, through all their identities (counted in the database).
BREAK_GLASS_NOTIFY = [
    item.strip() for item in os.environ.get("BREAK_GLASS_NOTIFY", "").split(",") if item.strip()
]
BREAK_GLASS_MAX_ACTIVATIONS = int(os.environ.get("BREAK_GLASS_MAX_ACTIVATIONS", "2"))
BREAK_GLASS_WINDOW = timedelta(hours=int(os.environ.get("BREAK_GLASS_WINDOW_HOURS", "24")))
WEBHOOK_TIMEOUT = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "10"))

# --- Email (Django's SMTP backend). Without EMAIL_HOST, DEBUG/demo print mail to the console.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS")
EMAIL_USE_SSL = _env_bool("EMAIL_USE_SSL")
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT_SECONDS", "10"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "aws-access@localhost")
EMAIL_BACKEND = (
    "django.core.mail.backends.console.EmailBackend"
    if not EMAIL_HOST and (DEBUG or DEMO_MODE)
    else "django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_HOST = EMAIL_HOST or "localhost"

# --- AWS: boto3's standard chain and AWS_ENDPOINT_URL_* are read by boto3 itself.
STS_REGIONS = _env_list("STS_REGIONS", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
# Revocation (federation/aws/iam.py): a role in each target account the broker assumes to edit IAM;
# unset means the broker's own credentials act on the roles directly.
IAM_MANAGEMENT_ROLE_NAME = os.environ.get("IAM_MANAGEMENT_ROLE_NAME", "")
# Explicit STS endpoints, tried in this order instead of one per STS_REGIONS entry (private
# endpoints, tests): comma-separated `URL` or `region=URL` items (docs/issuance.md).
STS_ENDPOINTS = _env_list("STS_ENDPOINTS")
# Does the broker itself run on role credentials (role chaining caps sessions at one hour)?
# "auto" asks STS once per process (GetCallerIdentity); "true"/"false" skip the question.
STS_BROKER_CHAINED = os.environ.get("STS_BROKER_CHAINED", "auto").strip().lower()
if STS_BROKER_CHAINED not in {"auto", "true", "false"}:
    raise ImproperlyConfigured("STS_BROKER_CHAINED must be auto, true or false.")
# In demo mode the console link goes to the local stand-in of the federation endpoint.
AWS_FEDERATION_URL = os.environ.get(
    "AWS_FEDERATION_URL",
    f"{BASE_URL}/demo-federation/" if DEMO_MODE else "https://signin.aws.amazon.com/federation",
)
# Personal API tokens (for the fedaccess CLI) live at most this many days.
API_TOKEN_MAX_DAYS = int(os.environ.get("API_TOKEN_MAX_DAYS", "90"))
# The API acts on the directory groups of the person's last sign-in: refuse it when that
# sign-in is older than this, so a person removed from a group loses CLI access within it.
API_SIGNIN_MAX_AGE_HOURS = int(os.environ.get("API_SIGNIN_MAX_AGE_HOURS", "24"))
# SCIM (docs/scim.md): after `scim_token` makes a new token, the IdP's older ones work this long.
SCIM_TOKEN_GRACE_HOURS = int(os.environ.get("SCIM_TOKEN_GRACE_HOURS", "24"))

# --- The control loop (docs/control-loop.md): provisioning the roles, and drift checks.
# The principal generated trust policies trust; empty: the broker's own identity (its role
# ARN when it runs on a role session; set it explicitly when that role has a path).
BROKER_PRINCIPAL_ARN = os.environ.get("BROKER_PRINCIPAL_ARN", "")
# IAM quotas our validator checks before any call (moto checks none); raise them with AWS first.
ROLE_TRUST_POLICY_MAX_CHARS = int(os.environ.get("ROLE_TRUST_POLICY_MAX_CHARS", "2048"))
ROLE_MANAGED_POLICIES_MAX = int(os.environ.get("ROLE_MANAGED_POLICIES_MAX", "10"))
# Accounts read or changed at once within one wave.
PROVISIONING_CONCURRENCY = int(os.environ.get("PROVISIONING_CONCURRENCY", "8"))
DRIFT_CHECK_INTERVAL_SECONDS = float(os.environ.get("DRIFT_CHECK_INTERVAL_SECONDS", "3600"))
# /review/ lists the mapping rows nobody used (IAM's RoleLastUsed, our issuance) for this long.
UNUSED_ACCESS_DAYS = int(os.environ.get("UNUSED_ACCESS_DAYS", "90"))
CELERY_IMPORTS = ["federation.provisioning.tasks"]
CELERY_BEAT_SCHEDULE["drift-check"] = {
    "task": "federation.provisioning.drift_check",
    "schedule": DRIFT_CHECK_INTERVAL_SECONDS,
}

# --- Cache: entitlement results are memoised per process under the mapping version.
CACHES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

# --- The edge (federation/edge/, docs/production.md): proxies and rate limits.
# How many proxies of our own stand in front; forwarded headers are believed only then.
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT must be 0 or more.")
RATE_LIMITS_ENABLED = _env_bool("RATE_LIMITS_ENABLED", True)
# Budgets per window (django-ratelimit syntax: "30/m", "20/10m"; "off" disables one).
RATE_LIMITS = {
    name: os.environ.get(f"RATE_LIMIT_{name.upper()}", default).strip().lower()
    for name, default in (
        ("signin", "60/m"),  # per client address: /saml/<idp>/login/, /oidc/<idp>/login/
        ("saml_acs", "60/m"),  # per client address
        ("oidc_callback", "60/m"),  # per client address
        ("api_address", "600/m"),  # per client address, every /api/ call
        ("api_token", "120/m"),  # per API token, every /api/ call
        ("issuance", "30/m"),  # per person: console links and CLI credentials
        ("requests", "20/10m"),  # per person: access requests filed
    )
}
for _name, _rate in RATE_LIMITS.items():
    if _rate != "off" and not re.fullmatch(r"[1-9][0-9]*/[1-9]?[0-9]*[smhd]", _rate):
        raise ImproperlyConfigured(
            f"RATE_LIMIT_{_name.upper()} must look like 30/m or 20/10m (or be off), got {_rate!r}."
        )
# When the cache is unreachable: "open" lets requests through unlimited, "closed" answers 503.
RATE_LIMIT_FAILURE = os.environ.get("RATE_LIMIT_FAILURE", "open").strip().lower()
if RATE_LIMIT_FAILURE not in {"open", "closed"}:
    raise ImproperlyConfigured("RATE_LIMIT_FAILURE must be open or closed.")
RATE_LIMIT_FAILURE_PAUSE_SECONDS = float(os.environ.get("RATE_LIMIT_FAILURE_PAUSE_SECONDS", "5"))
# Shared by every instance in production (Redis); without it, counted per process (demo).
RATE_LIMIT_CACHE_URL = os.environ.get("RATE_LIMIT_CACHE_URL", "")
_cache_timeout = float(os.environ.get("RATE_LIMIT_CACHE_TIMEOUT_SECONDS", "0.25"))
CACHES["ratelimit"] = (
    {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": RATE_LIMIT_CACHE_URL,
        "KEY_PREFIX": os.environ.get("RATE_LIMIT_CACHE_PREFIX", "fedaccess"),
        "OPTIONS": {"socket_connect_timeout": _cache_timeout, "socket_timeout": _cache_timeout},
    }
    if RATE_LIMIT_CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ratelimit"}
)
RATELIMIT_USE_CACHE = "ratelimit"  # django-ratelimit's setting

# --- Portal sessions. In Redis when SESSION_CACHE_URL is set (production): a sign-in and a page
# view then write and read no session row in PostgreSQL (bench/saml_acs.py). Losing Redis only
# signs people out; a leaver's sessions are deleted through the same store
# (federation/directory/leavers.py), and a deactivated user is refused by the auth backend
# whatever the store holds (federation/edge/sessions.py). Unset: sessions are rows in
# PostgreSQL (the demo, the tests).
SESSION_CACHE_URL = os.environ.get("SESSION_CACHE_URL", "")
SESSION_CACHE_PREFIX = os.environ.get("SESSION_CACHE_PREFIX", "fedaccess")
SESSION_CACHE_TIMEOUT_SECONDS = float(os.environ.get("SESSION_CACHE_TIMEOUT_SECONDS", "0.5"))
if SESSION_CACHE_URL:
    SESSION_ENGINE = "federation.edge.sessions"

# --- Transport and cookies (SECURITY.md §3). The BASE_URL scheme decides.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_MAX_AGE_SECONDS", str(8 * 3600)))
SESSION_IDLE_TIMEOUT_SECONDS = int(os.environ.get("SESSION_IDLE_TIMEOUT_SECONDS", str(3600)))
CSRF_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "federation.views.csrf_failure"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_TRUSTED_ORIGINS = [f"{_base.scheme}://{_base.netloc}"]
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if SECURE_TRANSPORT:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", True)
else:
    # Plain http is for loopback only (demo, tests); check --deploy warns about it.
    SILENCED_SYSTEM_CHECKS: list[str] = []

# X-Forwarded-Proto is believed only from proxies the deployment declares (federation/edge/).
if TRUSTED_PROXY_COUNT:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Request bodies: SAML responses are small; a cap bounds parser work on hostile input.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("DATA_UPLOAD_MAX_MEMORY_SIZE", str(512 * 1024)))

# --- Observability (docs/metrics.md): log format, request id, /metrics.
# One JSON object per line in production; plain text for the demo and DEBUG.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "").strip().lower() or (
    "plain" if DEBUG or DEMO_MODE else "json"
)
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, got {LOG_FORMAT!r}.")
# The request id comes from this header only when it is set: a trusted proxy must then write
# (or overwrite) it on every request. Unset: every request id is generated here.
REQUEST_ID_HEADER = os.environ.get("REQUEST_ID_HEADER", "").strip()
# /metrics: a bearer token if set, else loopback clients only (SPEC §3.1).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# prometheus-client's multiprocess mode (gunicorn and Celery workers each write their files
# here, the scrape sums them). Read by the library itself from the environment at start.
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR!r} is not a directory: create it "
        "(empty) before the web and worker processes start."
    )

# Every line through our handler is redacted (tokens, codes, assertions: log_redaction.py). The
# "django" logger is configured here so Django's default handlers (an unfiltered console under
# DEBUG, mail to ADMINS with the request's GET/POST) are replaced by ours.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "federation.observability.logging.JsonFormatter"},
        "plain": {"()": "federation.observability.logging.PlainFormatter"},
    },
    "filters": {"redact_credentials": {"()": "federation.log_redaction.RedactCredentials"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact_credentials"],
        }
    },
    "root": {
        "handlers": ["console"],
        "level": os.environ.get("LOG_LEVEL", "INFO"),
        "filters": ["redact_credentials"],
    },
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Request lines: the runserver access log (the demo federation stand-in's carry session
        # keys and sign-in tokens, the OIDC callback's carry codes) and 4xx/5xx warnings.
        "django.server": {
            "handlers": ["console"],
            "level": "INFO",
            "propagate": False,
            "filters": ["redact_credentials"],
        },
        "django.request": {"filters": ["redact_credentials"]},
        # botocore logs request bodies at DEBUG, which would include credentials.
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # authlib logs PKCE verifiers and token requests at DEBUG.
        "authlib": {"level": "WARNING"},
    },
}
