"""Redis connection pools on which a burst of commands waits its turn instead of failing.

A server process shares REDIS_POOL_SIZE connections among all its commands of one kind
(room state: presence, message ids; the channel layer: its publishes). A command finding
them all busy waits for one, up to REDIS_POOL_TIMEOUT. redis-py's default for that wait,
20 s, ran out on a worker holding 12,000 clients when ~1,200 messages came at once on a
loop already behind: the senders got SERVICE_UNAVAILABLE and a presence heartbeat was lost
(BENCHMARKS.md, "Crowd"). A burst drains at about REDIS_POOL_SIZE commands per round trip
through the event loop, so its wait grows with its size and the loop's load; the bound is
there so that commands fail, rather than pile up, when Redis stops answering.

Their connections pack commands with hiredis (in C): redis-py's asyncio connections pack
them in Python, 8 % of a server's CPU at 4,000 messages/s on Redis pub/sub (BENCHMARKS.md,
"A flatter application chain, one idle wheel, Redis in C").
"""

from collections.abc import Iterable
from functools import cache

import hiredis
import redis.asyncio as aioredis


def waiting_pool(url: str, size: int, timeout: float) -> aioredis.BlockingConnectionPool:
    """At most `size` connections to `url`; a command beyond them waits up to `timeout`
    seconds for one to come back, then fails with "No connection available"."""
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=size, timeout=timeout)
    return packing_in_c(pool)


def packing_in_c(pool: aioredis.ConnectionPool) -> aioredis.ConnectionPool:
    """`pool`, its connections (plain, TLS or UNIX socket, as its URL said) packing commands
    with hiredis."""
    pool.connection_class = _packing(pool.connection_class)
    return pool


class _PackingInC:
    """redis-py's pack_command and pack_commands, in C."""

    def pack_command(self, *args) -> list[bytes]:
        return [hiredis.pack_command(_split(args))]

    def pack_commands(self, commands: Iterable) -> list[bytes]:
        return [b"".join([hiredis.pack_command(_split(tuple(command))) for command in commands])]


def _split(args: tuple) -> tuple:
    # As redis-py does: a command name of several words ("SCRIPT LOAD") is several arguments.
    name = args[0]
    if isinstance(name, str):
        return (*name.encode().split(), *args[1:])
    return (*name.split(), *args[1:]) if b" " in name else args


@cache
def _packing(connection_class: type) -> type:
    return type(connection_class.__name__, (_PackingInC, connection_class), {})
