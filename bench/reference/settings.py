"""Minimal tutorial settings; ALLOWED_HOSTS=["*"] lets origin-less load clients through."""

import os

SECRET_KEY = "bench-reference-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "bench.reference.urls"
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
]

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

ASGI_APPLICATION = "bench.reference.asgi.application"

_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
_LAYER = os.environ.get("CHANNEL_LAYER", "memory")

if _LAYER == "redis":
    # Tutorial part 2's layer, used when the bench compares Redis-backed variants.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_REDIS_URL]},
        }
    }
elif _LAYER == "redis-pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [_REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
