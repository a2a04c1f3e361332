"""Per-room message ids, increasing within a room and shared by every server process.

In-process counters serve the single-process, in-memory configuration; with Redis the
counter is one INCR per message, so processes sharing a room never hand out an id twice.
"""

import asyncio
import weakref
from collections import defaultdict
from functools import cache

import redis.asyncio as redis
from django.conf import settings


class InProcessSequence:
    """Counters in this process's memory."""

    def __init__(self) -> None:
        self._last: defaultdict[str, int] = defaultdict(int)

    async def next(self, group: str) -> int:
        self._last[group] += 1
        return self._last[group]


class RedisSequence:
    """Counters in Redis, one key per room group."""

    def __init__(self, url: str, prefix: str) -> None:
        self._url = url
        self._prefix = prefix
        # redis.asyncio clients belong to the event loop that first used them.
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def next(self, group: str) -> int:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = redis.from_url(self._url)
        return await client.incr(f"{self._prefix}:seq:{group}")


@cache
def get_sequence() -> InProcessSequence | RedisSequence:
    """The sequence matching the configured channel layer."""
    if settings.REDIS_URL:
        return RedisSequence(settings.REDIS_URL, settings.REDIS_PREFIX)
    return InProcessSequence()
