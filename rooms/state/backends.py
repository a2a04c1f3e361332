"""Redis clients for the server's own commands (presence, message ids): a bounded pool.

redis-py's default pool opens a new connection for every command in flight. When thousands
of clients disconnect at once (a network failure, a proxy restart), thousands of leaves
each opened one, with its handshake, past Redis' `maxclients` (10,000 by default), and took
longer than Daphne's application close timeout (10 s), which then killed the consumers
before they announced their leaves (measured with 22,000 clients, bench/crowd.py). Here
commands wait for one of REDIS_POOL_SIZE connections instead.
"""

import redis.asyncio as aioredis
from django.conf import settings


def connect(url: str) -> aioredis.Redis:
    """A client whose commands share at most REDIS_POOL_SIZE connections."""
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=settings.REDIS_POOL_SIZE)
    return aioredis.Redis.from_pool(pool)
