"""Settings for the rooms chat server.

Every deployment value is read here, once, from the environment through `env()`; the
defaults suit a local run (DEBUG on, SQLite, in-memory channel layer). With DEBUG off,
SECRET_KEY has no default.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from rooms.core.limits import default_frame_bytes, message_bytes_needed

BASE_DIR = Path(__file__).resolve().parent.parent

_REQUIRED = object()


def boolean(raw: str) -> bool:
    """Parse 1/0, true/false, yes/no, on/off."""
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(raw)


def csv(raw: str) -> list[str]:
    """Parse a comma-separated list, ignoring blanks."""
    return [item.strip() for item in raw.split(",") if item.strip()]


def env(key: str, default: Any = _REQUIRED, cast: Callable[[str], Any] = str) -> Any:
    """Read one setting from the environment; an empty value counts as unset."""
    raw = os.environ.get(key, "")
    if raw == "":
        if default is _REQUIRED:
            raise ImproperlyConfigured(f"Setting {key} is missing, and has no default.")
        return default
    try:
        return cast(raw)
    except ValueError:
        raise ImproperlyConfigured(f"Setting {key}={raw!r} is not a valid {cast.__name__}.")


def root_path(raw: str) -> str:
    """Parse a URL path prefix: `/` and segments, without a trailing `/`."""
    if not raw.startswith("/") or raw.endswith("/") or any(c in raw for c in "?#% \\"):
        raise ValueError(raw)
    return raw


def secret_file(path: str) -> str:
    """The secret held in the file at `path`, without surrounding whitespace."""
    try:
        secret = Path(path).read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"Setting SECRET_KEY_FILE={path!r}: {exc.strerror}.")
    if not secret:
        raise ImproperlyConfigured(f"Setting SECRET_KEY_FILE={path!r} names an empty file.")
    return secret


DEBUG = env("DEBUG", True, boolean)
# The key, or a file holding it (a container secret; `make run` makes one on its first run);
# SECRET_KEY wins when both are set.
SECRET_KEY_FILE = env("SECRET_KEY_FILE", "")
if SECRET_KEY_FILE:
    SECRET_KEY = env("SECRET_KEY", secret_file(SECRET_KEY_FILE))
else:
    SECRET_KEY = env("SECRET_KEY", "insecure-local-only-key" if DEBUG else _REQUIRED)
# Outside local use (DEBUG off) the served hosts must be named: they are also the browser
# origins admitted to WebSockets (rooms/web/origin.py).
ALLOWED_HOSTS = env(
    "ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else _REQUIRED, csv
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rooms",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "rooms.web.security.content_security_policy",
]

# Security headers on every HTTP response. HTTPS=1 when a TLS-terminating proxy is in
# front (it must set X-Forwarded-Proto and strip any the client sent): secure cookies, HSTS.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = env(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'",
)
# Error pages and reports mask the password inside URL-shaped values (REDIS_URL, the channel
# layer's hosts) as well as settings named like KEY or PASSWORD.
DEFAULT_EXCEPTION_REPORTER_FILTER = "rooms.web.reporting.CredentialFilter"
HTTPS = env("HTTPS", False, boolean)
# The path prefix a proxy serves the site under, passing full paths on (the ASGI root_path,
# Django's SCRIPT_NAME); "" at the root. Only this decides it (chatproject/asgi.py): Daphne
# would take it from any client's Daphne-Root-Path header.
ROOT_PATH = env("ROOT_PATH", "", root_path)
FORCE_SCRIPT_NAME = ROOT_PATH or None  # for WhiteNoise, which reads it at start-up
if HTTPS:
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env("HSTS_SECONDS", 31536000, int)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

ROOT_URLCONF = "chatproject.urls"
ASGI_APPLICATION = "chatproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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
        env("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"), conn_max_age=0
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several server processes (rooms.server.workers) write history to one file: wait for the
    # lock instead of failing at once ("database is locked"). A transaction that reads
    # before it writes must take the write lock when it begins (IMMEDIATE): SQLite fails,
    # without waiting, the upgrade of a read lock while another writer waits.
    # PostgreSQL suits several processes better.
    DATABASES["default"].setdefault("OPTIONS", {}).update(timeout=20, transaction_mode="IMMEDIATE")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files: WhiteNoise serves them from Daphne. In production (DEBUG off) they come
# from STATIC_ROOT, filled by `manage.py collectstatic`, with hashed names cached forever
# and compressed copies; with DEBUG on they are read straight from the apps.
STATIC_URL = f"{ROOT_PATH}/static/"
STATIC_ROOT = env("STATIC_ROOT", BASE_DIR / "staticfiles", Path)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Channel layer: in-process unless REDIS_URL is set. With Redis, "redis-pubsub" (the
# default) publishes each room message once per process; "redis" is channels-redis'
# list-based layer, kept for comparison (see BENCHMARKS.md).
# REDIS_URL may list several Redis servers, comma-separated: each room lives on one of them
# (rooms.state.shards; docs/scaling.md, "Shards"). Their order names the shards.
REDIS_URL = env("REDIS_URL", "")
REDIS_URLS = [url.strip() for url in REDIS_URL.split(",") if url.strip()]
# REDIS_CLUSTER=1: those URLs are seed nodes of one Redis Cluster (docs/scaling.md).
REDIS_CLUSTER = env("REDIS_CLUSTER", False, boolean)
REDIS_PREFIX = env("REDIS_PREFIX", "rooms")
# Connections each process opens for its own Redis commands (presence, message ids).
REDIS_POOL_SIZE = env("REDIS_POOL_SIZE", 32, int)
# Seconds a command waits for one of them in a burst before it fails (rooms.state.pools).
REDIS_POOL_TIMEOUT = env("REDIS_POOL_TIMEOUT", 60.0, float)
CHANNEL_LAYER = env("CHANNEL_LAYER", "redis-pubsub" if REDIS_URL else "memory")
CHANNEL_CAPACITY = env("CHANNEL_CAPACITY", 1000, int)
_LAYERS = {
    "memory": {
        "BACKEND": "rooms.layers.memory.FanoutInMemoryChannelLayer",
        "CONFIG": {"capacity": CHANNEL_CAPACITY},
    },
    "redis-pubsub": {
        "BACKEND": "rooms.layers.redis_pubsub.ResilientRedisPubSubChannelLayer",
        "CONFIG": {"hosts": REDIS_URLS, "prefix": REDIS_PREFIX, "cluster": REDIS_CLUSTER},
    },
    "redis": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": REDIS_URLS, "prefix": REDIS_PREFIX, "capacity": CHANNEL_CAPACITY},
    },
}
if CHANNEL_LAYER not in _LAYERS:
    raise ImproperlyConfigured(
        f"Setting CHANNEL_LAYER={CHANNEL_LAYER!r} is not one of {list(_LAYERS)}."
    )
if CHANNEL_LAYER != "memory" and not REDIS_URL:
    raise ImproperlyConfigured(f"Setting CHANNEL_LAYER={CHANNEL_LAYER!r} needs REDIS_URL.")
if REDIS_CLUSTER and CHANNEL_LAYER != "redis-pubsub":
    raise ImproperlyConfigured("Setting REDIS_CLUSTER=1 needs CHANNEL_LAYER=redis-pubsub.")
CHANNEL_LAYERS = {"default": _LAYERS[CHANNEL_LAYER]}

# Chat limits (docs/protocol.md).
ROOMS_MAX_MESSAGE_LENGTH = env("MAX_MESSAGE_LENGTH", 4096, int)

# Identity and authority (docs/protocol.md, "Identity"): who may join, under which name.
ROOMS_ALLOW_ANONYMOUS = env("ALLOW_ANONYMOUS", True, boolean)  # joins without a user
ROOMS_TOKEN_TTL = env("TOKEN_TTL", 900, int)  # seconds a token from issue_token lasts
ROOMS_MAX_CONNECTIONS_PER_USER = env("MAX_CONNECTIONS_PER_USER", 10, int)  # 0: no limit
ROOMS_DISPLAY_NAME = env("DISPLAY_NAME", "")  # dotted path: callable(user) -> str
ROOMS_CAN_JOIN = env("CAN_JOIN", "")  # dotted path: can_join(user, room) -> bool, or async
ROOMS_ACCESS_REFRESH = env("ACCESS_REFRESH", 30.0, float)  # seconds between snapshot reads
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = LOGOUT_REDIRECT_URL = "index"

# Room state (docs/protocol.md, docs/api.md): presence, history, persistence, retention.
ROOMS_PRESENCE_TTL = env("PRESENCE_TTL", 15.0, float)  # seconds a dead process's members last
ROOMS_HISTORY_ON_JOIN = env("HISTORY_ON_JOIN", 50, int)  # messages a JSON joiner receives
ROOMS_HISTORY_MAX = env("HISTORY_MAX", 1000, int)  # most replayed at once; recent cache size
# Bytes (of JSON frames, as sent) of one room's recent cache, and of one replay.
ROOMS_RECENT_CACHE_BYTES = env("RECENT_CACHE_BYTES", 256 * 1024, int)
ROOMS_REPLAY_MAX_BYTES = env("REPLAY_MAX_BYTES", 1024 * 1024, int)
# Seconds after its last message or join that a room's Redis keys (id counter, recent
# cache) expire; ids carry on from the database afterwards.
ROOMS_ROOM_KEY_TTL = env("ROOM_KEY_TTL", 86400.0, float)
ROOMS_FLUSH_INTERVAL = env("FLUSH_INTERVAL_MS", 200, int) / 1000  # persistence batch period
ROOMS_FLUSH_BATCH = env("FLUSH_BATCH", 500, int)  # a batch this large is written at once
# Messages accepted but not written yet (a slow or unavailable database), and the memory
# their text takes: at either bound new messages are refused (SERVICE_UNAVAILABLE) until
# the backlog is written; 0: no bound (docs/operations.md).
ROOMS_HISTORY_PENDING_MAX = env("HISTORY_PENDING_MAX", 100_000, int)
ROOMS_HISTORY_PENDING_BYTES = env("HISTORY_PENDING_BYTES", 64 * 1024 * 1024, int)
ROOMS_RETENTION_MESSAGES = env("RETENTION_MESSAGES", 100_000, int)  # per room; 0: no cap
ROOMS_RETENTION_DAYS = env("RETENTION_DAYS", 0.0, float)  # 0: no age cap

# Abuse limits and timeouts (docs/operations.md); 0 turns a limit off.
ROOMS_RATE_LIMIT = env("RATE_LIMIT", 10.0, float)  # frames a second per connection, sustained
ROOMS_RATE_BURST = env("RATE_BURST", 30.0, float)  # frames a connection may send at once
ROOMS_MAX_CONNECTIONS = env("MAX_CONNECTIONS", 5000, int)  # room connections per process
ROOMS_MAX_ROOM_CONNECTIONS = env("MAX_ROOM_CONNECTIONS", 1000, int)  # per room, per process
ROOMS_IDLE_TIMEOUT = env("IDLE_TIMEOUT", 3600.0, float)  # seconds without a valid message
# Per client address (IPv6: per /64), per process; behind a proxy, only with Daphne's
# --proxy-headers (docs/operations.md). 100 connections: a household or an office behind
# one NAT, with a few tabs each, while one address holds at most a fiftieth of
# MAX_CONNECTIONS. Joins: 30 at once (the pages behind one address reconnecting after a
# restart), then one a second, refused joins included, so a client reconnecting in a loop
# sends its room at most a join and a leave notice a second.
ROOMS_MAX_CONNECTIONS_PER_IP = env("MAX_CONNECTIONS_PER_IP", 100, int)
ROOMS_JOIN_RATE = env("JOIN_RATE", 1.0, float)  # joins a second per address, sustained
ROOMS_JOIN_BURST = env("JOIN_BURST", 30.0, float)  # joins an address may make at once
if ROOMS_JOIN_RATE > 0 and ROOMS_JOIN_BURST < 1:
    raise ImproperlyConfigured(
        f"Setting JOIN_BURST={ROOMS_JOIN_BURST:g} would refuse every join: make it 1 or more, "
        "or set JOIN_RATE=0 to turn the join limit off."
    )
# Transport limits, applied by the launcher (python -m rooms.server.serve).
ROOMS_SEND_BUFFER_LIMIT = env("SEND_BUFFER_LIMIT", 512 * 1024, int)  # unsent bytes per client
ROOMS_PING_INTERVAL = env("PING_INTERVAL", 20, int)  # seconds of silence before a ping
ROOMS_PING_TIMEOUT = env("PING_TIMEOUT", 30, int)  # seconds to answer it
ROOMS_HANDSHAKE_TIMEOUT = env("HANDSHAKE_TIMEOUT", 5, int)  # seconds to complete a handshake
# Larger messages: close 1009. autobahn buffers up to this much of a message per connection:
# unset, it is what the longest valid message needs (rooms.core.limits); set, never less.
ROOMS_MAX_FRAME_BYTES = env("MAX_FRAME_BYTES", default_frame_bytes(ROOMS_MAX_MESSAGE_LENGTH), int)
if ROOMS_MAX_FRAME_BYTES < message_bytes_needed(ROOMS_MAX_MESSAGE_LENGTH):
    raise ImproperlyConfigured(
        f"Setting MAX_FRAME_BYTES={ROOMS_MAX_FRAME_BYTES} is below the "
        f"{message_bytes_needed(ROOMS_MAX_MESSAGE_LENGTH)} bytes a message of "
        f"MAX_MESSAGE_LENGTH={ROOMS_MAX_MESSAGE_LENGTH} characters may take; raise it, "
        "or leave it unset."
    )
ROOMS_SHUTDOWN_TIMEOUT = env("SHUTDOWN_TIMEOUT", 8.0, float)  # SIGTERM to exit (docker: 10)
# Seconds a consumer has to announce its leave after its client went; Daphne's 10 s was too
# little when 11,000 clients of one process dropped at once (bench/crowd.py).
ROOMS_CLOSE_TIMEOUT = env("CLOSE_TIMEOUT", 60, int)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "rooms.core.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": env("LOG_FORMAT", "plain"),
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
}
