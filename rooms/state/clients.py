"""Redis clients for room state (presence, message ids, readiness), one per shard, and what a
store kept in Redis raises while Redis is unreachable.

REDIS_URL may list several shards (rooms.state.shards): `for_name` gives the client of the
shard owning a room's group or a user's key. One client per shard and event loop
(redis.asyncio clients belong to the loop that first used them), shared by every store, on
a bounded pool. redis-py's default pool opens a new connection
for every command in flight: when thousands of clients disconnect at once (a network
failure, a proxy restart), thousands of leaves each opened one, with its handshake, past
Redis' `maxclients` (10,000 by default), and took longer than Daphne's application close
timeout, which then killed the consumers before they announced their leaves
(BENCHMARKS.md, "Crowd"). Here commands wait for one of REDIS_POOL_SIZE connections, up to
REDIS_POOL_TIMEOUT (rooms.state.pools).
"""

import asyncio
import weakref
from functools import cache
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.connection import parse_url
from redis.cluster import ClusterNode
from redis.exceptions import RedisError

from rooms.layers.cluster_pubsub import cluster_client
from rooms.state import pools, shards

BACKEND_ERRORS = (RedisError, OSError, TimeoutError)

# event loop -> shard -> client
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)
_heartbeats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)

# event loop -> Redis Cluster node ("host:port") -> client
_nodes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


def cluster() -> bool:
    """Whether REDIS_URL names the seed nodes of one Redis Cluster (REDIS_CLUSTER)."""
    return settings.REDIS_CLUSTER


def count() -> int:
    """How many shards room state is spread over: those REDIS_URL lists, or one Redis
    Cluster, which places each key itself."""
    return 1 if settings.REDIS_CLUSTER else len(settings.REDIS_URLS)


def shard_for(name: str) -> int:
    """The shard owning `name`: a room's group, a user's key."""
    return shards.shard_of(name, count())


def connect(shard: int) -> aioredis.Redis:
    """This event loop's client for one shard, its commands sharing REDIS_POOL_SIZE
    connections."""
    loop_clients = _clients.setdefault(asyncio.get_running_loop(), {})
    client = loop_clients.get(shard)
    if client is None and settings.REDIS_CLUSTER:
        # Unbounded: redis-py's cluster client has no blocking pool, and a bounded one
        # fails the commands beyond it (MaxConnectionsError) instead of queueing them.
        client = loop_clients[shard] = cluster_client(settings.REDIS_URLS)
    elif client is None:
        pool = pools.waiting_pool(
            settings.REDIS_URLS[shard], settings.REDIS_POOL_SIZE, settings.REDIS_POOL_TIMEOUT
        )
        client = loop_clients[shard] = aioredis.Redis.from_pool(pool)
    return client


def node(name: str) -> aioredis.Redis:
    """This event loop's client of one Redis Cluster node ("host:port"), for pipelines of
    calls whose slots it serves (rooms.state.cluster_batches); REDIS_POOL_SIZE connections."""
    loop_nodes = _nodes.setdefault(asyncio.get_running_loop(), {})
    client = loop_nodes.get(name)
    if client is None:
        host, _, port = name.rpartition(":")
        # The seed URL's options (password, TLS), this node's address.
        options = {**parse_url(settings.REDIS_URLS[0]), "host": host, "port": int(port)}
        pool = aioredis.BlockingConnectionPool(max_connections=settings.REDIS_POOL_SIZE, **options)
        client = loop_nodes[name] = aioredis.Redis.from_pool(pools.packing_in_c(pool))
    return client


async def drop_node(name: str) -> None:
    """Forget a node's client after a failure: the node may be gone for good (a failover)."""
    client = _nodes.get(asyncio.get_running_loop(), {}).pop(name, None)
    if client is not None:
        try:
            await client.aclose()
        except BACKEND_ERRORS:  # its connections are broken already: closing is tidying
            pass


def connect_heartbeat(shard: int) -> aioredis.Redis:
    """This event loop's client for one shard's presence heartbeat, on a connection of its
    own: behind a mass disconnect's leaves in the shared pool, heartbeats waited past
    PRESENCE_TTL and other processes took live ones for dead (BENCHMARKS.md, "Crowd").
    Not for a Redis Cluster, whose client has no bound on its connections."""
    beats = _heartbeats.setdefault(asyncio.get_running_loop(), {})
    client = beats.get(shard)
    if client is None:
        pool = pools.waiting_pool(settings.REDIS_URLS[shard], 1, settings.REDIS_POOL_TIMEOUT)
        client = beats[shard] = aioredis.Redis.from_pool(pool)
    return client


def for_name(name: str) -> aioredis.Redis:
    """This event loop's client for the shard owning `name`."""
    return connect(shard_for(name))


def connect_sync(name: str) -> redis.Redis:
    """A client for synchronous code (the admin, management commands), of the shard owning
    `name`."""
    if settings.REDIS_CLUSTER:
        return _sync_cluster(tuple(settings.REDIS_URLS))
    return _sync_client(settings.REDIS_URLS[shard_for(name)])


@cache
def _sync_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


@cache
def _sync_cluster(urls: tuple[str, ...]) -> redis.RedisCluster:
    seeds = [urlsplit(url) for url in urls]
    nodes = [ClusterNode(seed.hostname or "127.0.0.1", seed.port or 6379) for seed in seeds]
    return redis.RedisCluster.from_url(urls[0], startup_nodes=nodes)


async def close() -> None:
    """Close this event loop's clients (at shutdown, or between tests)."""
    loop = asyncio.get_running_loop()
    clients = (_clients, _nodes, _heartbeats)
    for client in [c for each in clients for c in each.pop(loop, {}).values()]:
        await client.aclose()
