"""The pub/sub layer's channels on a Redis Cluster (REDIS_CLUSTER=1): sharded pub/sub
(SSUBSCRIBE/SPUBLISH, Redis 7), each channel on the master owning its slot, so a publish
stays on that master instead of reaching every node.

redis-py 7.4's asyncio client has neither RedisCluster.pubsub() nor PubSub.ssubscribe()
(docs/scaling.md, "A Redis Cluster in the tests"): channels are subscribed with the raw
SSUBSCRIBE on a PubSub of the owning master and read with get_message() ("smessage"); a
PubSub does not subscribe shard channels again after a reconnection, so its connection is
made without retries, and a lost one makes every channel of that master subscribed again
wherever the cluster then places it (a failover moves slots). A subscription returns once
the master has confirmed it ("ssubscribe", read by the master's receiver;
rooms.layers.gathering).
"""

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from rooms import internals
from rooms.layers.gathering import Confirmations, Joining, Leaving
from rooms.layers.resubscribing import RETRY_FIRST, RETRY_MAX

logger = logging.getLogger(__name__)


def cluster_client(urls: list[str], **kwargs) -> RedisCluster:
    """An asyncio client of the cluster whose seed nodes `urls` name."""
    seeds = [urlsplit(url) for url in urls]
    nodes = [ClusterNode(seed.hostname or "127.0.0.1", seed.port or 6379) for seed in seeds]
    return RedisCluster.from_url(urls[0], startup_nodes=nodes, **kwargs)


class _Master:
    """One master's PubSub and the shard channels subscribed on it."""

    def __init__(self, host: str, port: int) -> None:
        self.client = aioredis.Redis(host=host, port=port, retry=Retry(NoBackoff(), 0))
        self.pubsub = self.client.pubsub()
        self.channels: set[str] = set()
        self.receiver: asyncio.Task | None = None

    async def close(self) -> None:
        if self.receiver is not None:
            self.receiver.cancel()
        try:
            await self.pubsub.aclose()
            await self.client.aclose()
        except Exception:  # a lost connection: closing is tidying
            logger.debug("closing a master's PubSub failed", exc_info=True)


class ClusterShard:
    """Every channel of a layer on a Redis Cluster: the role of channels-redis'
    RedisSingleShardConnection (publish, subscribe, unsubscribe, flush), and `lost` while
    some subscriptions are being restored."""

    def __init__(self, urls: list[str], receive: Callable[[dict], None]) -> None:
        internals.require("redis")
        self.host = {"address": urls[0]}
        self._urls = urls
        self._receive = receive
        self._cluster: RedisCluster | None = None
        self._masters: dict[str, _Master] = {}  # "host:port" -> its subscriptions
        self._lock = asyncio.Lock()
        self._restoring = 0  # masters whose subscriptions are being restored
        self._confirmations = Confirmations()
        self._joining = Joining(self._lock, self._subscribe_joining, self._confirmations)
        self._leaving = Leaving(self._lock, self._unsubscribe_leaving)

    @property
    def lost(self) -> bool:
        return self._restoring > 0

    def _client(self) -> RedisCluster:
        if self._cluster is None:
            self._cluster = cluster_client(self._urls)
        return self._cluster

    async def publish(self, channel: str, message: bytes) -> None:
        await self._client().execute_command("SPUBLISH", channel, message)

    async def subscribe(self, channel: str) -> None:
        """Subscribe `channel` together with every other channel joining meanwhile, under
        one turn of the lock, as ResubscribingShard does on shards: one turn each made a
        burst of joins wait in line for the lock (BENCHMARKS.md, "Joins on the cluster").
        Returns once the master has confirmed the subscription."""
        self._leaving.stay(channel)  # a group emptied and joined again: it stays
        await self._joining.join(channel)

    async def _subscribe_joining(self, names: list[str]) -> None:
        # A room's channel is asked for on every join: sent once.
        masters = self._masters.values()
        names = [n for n in names if not any(n in m.channels for m in masters)]
        if names:
            with self._confirmations.expecting(names):
                await self._subscribe(names)

    async def _subscribe(self, channels: list[str]) -> None:
        cluster = self._client()
        await cluster.initialize()
        # One SSUBSCRIBE per slot: the channels of one command must share a slot.
        by_slot: dict[tuple[str, int], list[str]] = {}
        for channel in channels:
            node = cluster.get_node_from_key(channel)
            by_slot.setdefault((node.name, cluster.keyslot(channel)), []).append(channel)
            if node.name not in self._masters:
                self._masters[node.name] = _Master(node.host, node.port)
        for (name, _), names in by_slot.items():
            master = self._masters[name]
            await master.pubsub.execute_command("SSUBSCRIBE", *names)
            master.channels.update(names)
        for name in {name for name, _ in by_slot}:
            master = self._masters[name]
            if master.receiver is None or master.receiver.done():
                master.receiver = asyncio.ensure_future(self._read(name, master))

    async def unsubscribe(self, channel: str) -> None:
        self.unsubscribe_soon(channel)
        await self._leaving.flush()

    def unsubscribe_soon(self, channel: str) -> None:
        """Unsubscribe `channel` together with every other channel leaving meanwhile."""
        self._leaving.leave(channel)

    async def _unsubscribe_leaving(self, leaving: set[str]) -> None:
        for master in self._masters.values():
            for channel in leaving & master.channels:
                master.channels.discard(channel)
                try:
                    await master.pubsub.execute_command("SUNSUBSCRIBE", channel)
                except Exception:  # a lost connection: resubscribing leaves it out
                    logger.warning("unsubscribing %s failed", channel)

    async def _read(self, name: str, master: _Master) -> None:
        while True:
            try:
                # Without a timeout: one cost an asyncio.timeout() per message read.
                message = await master.pubsub.get_message(timeout=None)
            except (asyncio.CancelledError, GeneratorExit):
                self._confirmations.fail(ConnectionError("stopped receiving"), master.channels)
                raise
            except Exception:
                logger.warning("Redis Cluster subscription lost; resubscribing", exc_info=True)
                # Joins waiting fail; their channels are subscribed again with the others.
                self._confirmations.fail(ConnectionError("subscription lost"), master.channels)
                self._restoring += 1
                try:
                    await self._resubscribe(name, master)
                finally:
                    self._restoring -= 1
                return  # the new masters' receivers read on
            if message is None:
                continue
            if message["type"] == "smessage":
                self._receive(message)
            elif message["type"] == "ssubscribe":
                self._confirmations.confirm(message["channel"])

    async def _resubscribe(self, name: str, master: _Master) -> None:
        delay = RETRY_FIRST
        while True:
            await asyncio.sleep(delay)
            try:
                async with self._lock:
                    if self._masters.get(name) is master:
                        del self._masters[name]
                    master.receiver = None
                    await master.close()
                    await self._client().nodes_manager.initialize()  # where the slots are now
                    await self._subscribe(sorted(master.channels))
            except Exception as exc:
                logger.debug("resubscription failed: %r", exc)
                delay = min(delay * 2, RETRY_MAX)
                continue
            logger.info("Redis Cluster subscriptions restored: %d channels", len(master.channels))
            return

    async def flush(self) -> None:
        async with self._lock:
            masters, self._masters = list(self._masters.values()), {}
            for master in masters:
                await master.close()
            if self._cluster is not None:
                await self._cluster.aclose()
                self._cluster = None
