"""Error pages and reports (rooms.web.reporting): no password of a URL in them."""

import sys

import pytest
from django.views.debug import ExceptionReporter, get_default_exception_reporter_filter

from rooms.web.reporting import mask_url_passwords

MASK = "********************"
PASSWORD = "hunter2"
REDIS_URL = f"redis://rooms:{PASSWORD}@redis.internal:6379/0"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (REDIS_URL, f"redis://rooms:{MASK}@redis.internal:6379/0"),
        ("redis://:hunter2@127.0.0.1:6379", f"redis://:{MASK}@127.0.0.1:6379"),
        ("rediss://u:hunter2@r/0?ssl_cert_reqs=none", f"rediss://u:{MASK}@r/0?ssl_cert_reqs=none"),
        ("postgres://app:p@ss@db.internal/rooms", f"postgres://app:{MASK}@db.internal/rooms"),
        ("postgres://app:p%40ss@db/rooms", f"postgres://app:{MASK}@db/rooms"),
        ("hosts a://u:x@h and b://v:y@k", f"hosts a://u:{MASK}@h and b://v:{MASK}@k"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://rooms@127.0.0.1:6379/0", "redis://rooms@127.0.0.1:6379/0"),
        ("http://127.0.0.1:8000/chat/?nickname=a@b", "http://127.0.0.1:8000/chat/?nickname=a@b"),
        ("user:password@host", "user:password@host"),
        ("a" * 100_000 + "://x", "a" * 100_000 + "://x"),
    ],
    ids=[
        "user-and-password",
        "password-only",
        "query-kept",
        "at-sign-in-password",
        "percent-encoded",
        "two-urls",
        "no-credentials",
        "user-only",
        "at-sign-after-the-host",
        "not-a-url",
        "long-word",
    ],
)
def test_url_passwords_are_masked_and_nothing_else(text, masked):
    assert mask_url_passwords(text, MASK) == masked


def test_safe_settings_mask_passwords_in_redis_url_and_channel_layer_hosts(settings):
    settings.REDIS_URL = REDIS_URL
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "rooms.layers.redis_pubsub.ResilientRedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "rooms"},
        }
    }
    safe = get_default_exception_reporter_filter().get_safe_settings()
    assert safe["REDIS_URL"] == f"redis://rooms:{MASK}@redis.internal:6379/0"
    assert safe["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"] == [safe["REDIS_URL"]]


def test_database_settings_keep_no_password_in_any_field():
    databases = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "USER": "app",
            "PASSWORD": PASSWORD,
            "HOST": "db",
            "NAME": "rooms",
            "OPTIONS": {"service": f"pg://app:{PASSWORD}@db/rooms"},
        }
    }
    safe = get_default_exception_reporter_filter().cleanse_setting("DATABASES", databases)
    assert PASSWORD not in repr(safe)
    assert safe["default"]["USER"] == "app"


def test_the_debug_page_shows_no_url_password_of_settings_or_variables(rf, settings):
    settings.DEBUG = True
    settings.REDIS_URL = REDIS_URL
    request = rf.get("/readyz")
    url = REDIS_URL  # a local variable of the failing frame, shown on the page
    try:
        raise ConnectionError(f"Error 111 connecting to redis.internal:6379 ({len(url)})")
    except ConnectionError:
        html = ExceptionReporter(request, *sys.exc_info()).get_traceback_html()
    assert "redis.internal:6379/0" in html  # the URLs are there, their password is not
    assert PASSWORD not in html  # (the page also quotes these lines of source)
