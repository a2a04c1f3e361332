"""Redis clients for room state (presence, message ids, readiness), and what a store kept in
Redis raises while Redis is unreachable.

One client per event loop (redis.asyncio clients belong to the loop that first used them),
shared by every store, on a bounded pool. redis-py's default pool opens a new connection
for every command in flight: when thousands of clients disconnect at once (a network
failure, a proxy restart), thousands of leaves each opened one, with its handshake, past
Redis' `maxclients` (10,000 by default), and took longer than Daphne's application close
timeout, which then killed the consumers before they announced their leaves
(BENCHMARKS.md, "Crowd"). Here commands wait for one of REDIS_POOL_SIZE connections.
"""

import asyncio
import weakref
from functools import cache

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.exceptions import RedisError

BACKEND_ERRORS = (RedisError, OSError, TimeoutError)

_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> client


def connect() -> aioredis.Redis:
    """This event loop's client for REDIS_URL, its commands sharing REDIS_POOL_SIZE
    connections."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=settings.REDIS_POOL_SIZE
        )
        client = _clients[loop] = aioredis.Redis.from_pool(pool)
    return client


def connect_sync() -> redis.Redis:
    """A client for synchronous code (the admin, management commands)."""
    return _sync_client(settings.REDIS_URL)


@cache
def _sync_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


async def close() -> None:
    """Close this event loop's client (at shutdown, or between tests)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()
