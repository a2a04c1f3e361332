"""Redis connection pools on which a burst of commands waits its turn instead of failing.

A server process shares REDIS_POOL_SIZE connections among all its commands of one kind
(room state: presence, message ids; the channel layer: its publishes). A command finding
them all busy waits for one, up to REDIS_POOL_TIMEOUT. redis-py's default for that wait,
20 s, ran out on a worker holding 12,000 clients when ~1,200 messages came at once on a
loop already behind: the senders got SERVICE_UNAVAILABLE and a presence heartbeat was lost
(BENCHMARKS.md, "Crowd"). A burst drains at about REDIS_POOL_SIZE commands per round trip
through the event loop, so its wait grows with its size and the loop's load; the bound is
there so that commands fail, rather than pile up, when Redis stops answering.
"""

import redis.asyncio as aioredis


def waiting_pool(url: str, size: int, timeout: float) -> aioredis.BlockingConnectionPool:
    """At most `size` connections to `url`; a command beyond them waits up to `timeout`
    seconds for one to come back, then fails with "No connection available"."""
    return aioredis.BlockingConnectionPool.from_url(url, max_connections=size, timeout=timeout)
