"""A channels-redis shard connection that subscribes again after Redis comes back.

channels-redis 4.3 with redis-py 7.4 never subscribes again after Redis goes away and comes
back (rooms.layers.redis_pubsub). Here the receive loop, on a lost connection, replaces its
PubSub with a new one subscribed to every channel and group it had, retrying with backoff
until Redis answers; `lost` says so meanwhile, and until Redis has confirmed every one of
them. Subscriptions and unsubscriptions made while one is under way are sent together, one
command for many, and a subscription returns once Redis has confirmed it: the receive loop
reads the confirmations (rooms.layers.gathering).
Its publishes share a bounded pool, on which a burst waits (rooms.state.pools).
"""

import asyncio
import logging

import redis.asyncio as aioredis
from channels_redis.pubsub import RedisSingleShardConnection
from django.conf import settings

from rooms.layers.gathering import Confirmations, Joining, Leaving
from rooms.state import pools

logger = logging.getLogger(__name__)

RETRY_FIRST = 0.1  # seconds before the first resubscription attempt
RETRY_MAX = 0.5  # longest wait between attempts


class ResubscribingShard(RedisSingleShardConnection):
    """A shard connection whose receive loop resubscribes after a lost connection."""

    lost = False  # True from a lost connection until Redis confirms its subscriptions again

    def __init__(self, host, channel_layer) -> None:
        super().__init__(host, channel_layer)
        self._confirmations = Confirmations()
        self._subscribed = asyncio.Event()  # set when a subscription starts
        self._restoring: set[str] = set()  # subscribed again, not confirmed yet
        self._joining = Joining(self._lock, self._subscribe_joining, self._confirmations)
        self._leaving = Leaving(self._lock, self._unsubscribe_leaving)

    def _ensure_redis(self) -> None:
        # channels-redis' pool has no bound: a burst of publishes opened a connection each,
        # towards Redis' maxclients. One more than REDIS_POOL_SIZE: the subscription keeps one.
        if self._redis is None and "address" in self.host:
            size = settings.REDIS_POOL_SIZE + 1
            pool = pools.waiting_pool(self.host["address"], size, settings.REDIS_POOL_TIMEOUT)
            self._redis = aioredis.Redis(connection_pool=pool)
            self._pubsub = self._redis.pubsub()
        super()._ensure_redis()

    async def subscribe(self, channel: str) -> None:
        """Subscribe `channel` together with every other channel or group joining meanwhile.

        One SUBSCRIBE per new connection cost a command and a turn of the shard's lock
        each: sharing them made churn on this layer markedly faster
        (BENCHMARKS.md, "Connecting on Redis pub/sub"). Returns once Redis has confirmed
        the subscription: a publish sent after it then reaches this process."""
        await self._joining.join(channel)

    async def _subscribe_joining(self, names: list[str]) -> None:
        # Checked under the lock, as channels-redis does: an UNSUBSCRIBE of a group that
        # emptied may have run just before.
        names = [name for name in names if name not in self._subscribed_to]
        if names:
            self._ensure_redis()
            self._ensure_receiver()
            with self._confirmations.expecting(names):
                await self._pubsub.subscribe(*names)
            self._subscribed_to.update(names)
            self._subscribed.set()

    def unsubscribe_soon(self, channel: str) -> None:
        """Unsubscribe `channel` together with every other channel leaving meanwhile.

        One UNSUBSCRIBE per channel, each under the shard's lock, took minutes when
        thousands of clients left at once, and held up every publish (the leave notices)
        behind them; consumers outlived Daphne's close timeout and were killed."""
        self._leaving.leave(channel)

    async def _unsubscribe_leaving(self, channels: set[str]) -> None:
        try:
            await self._pubsub.unsubscribe(*channels)
        except Exception:  # a lost connection: resubscribing will leave them out
            logger.warning("unsubscribing %d channels failed", len(channels))
        self._subscribed_to -= channels

    async def _do_receiving(self) -> None:
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    # Without a timeout: one cost an asyncio.timeout() per message read.
                    message = await self._pubsub.get_message(timeout=None)
                    self._receive_message(message)
                else:  # until a subscription starts: a join waits for its confirmation
                    self._subscribed.clear()
                    await self._subscribed.wait()
            except (asyncio.CancelledError, GeneratorExit):
                self._confirmations.fail(ConnectionError("the layer stopped receiving"))
                raise
            except Exception:
                logger.warning("Redis subscription lost; resubscribing", exc_info=True)
                # Joins waiting fail; their names are subscribed again with the others.
                self._confirmations.fail(ConnectionError("Redis subscription lost"))
                self.lost = True
                await self._resubscribe()
                # Deaf until Redis has confirmed every channel subscribed again: a publish
                # reaching it before would not come back here.
                self.lost = bool(self._restoring)

    async def _resubscribe(self) -> None:
        delay = RETRY_FIRST
        while True:
            await asyncio.sleep(delay)
            try:
                async with self._lock:
                    pubsub = self._redis.pubsub()
                    self._restoring = set(self._subscribed_to)
                    if self._subscribed_to:
                        await pubsub.subscribe(*self._subscribed_to)
                    old, self._pubsub = self._pubsub, pubsub
            except Exception as exc:
                logger.debug("resubscription failed: %r", exc)
                delay = min(delay * 2, RETRY_MAX)
                continue
            logger.info("Redis subscriptions restored: %d channels", len(self._subscribed_to))
            try:
                await old.aclose()
            except Exception:  # the old connection is already dead; closing is tidying
                logger.debug("closing the lost PubSub failed", exc_info=True)
            return

    def _receive_message(self, message: dict | None) -> None:
        if message is None:
            return
        if message["type"] == "message":
            self.channel_layer.receive_message(message)
        elif message["type"] == "subscribe":
            name = message["channel"]
            name = name.decode() if isinstance(name, bytes) else name
            self._confirmations.confirm(name)
            if self._restoring:
                self._restoring.discard(name)
                self.lost = bool(self._restoring)
