"""channels-redis' pub/sub layer, made to survive a Redis restart.

channels-redis 4.3 with redis-py 7.4 never subscribes again after Redis goes away and
comes back: publishing works again but every member of every room stops receiving, until
the server is restarted (measured in tests/test_faults.py). Here the receive loop, on a
lost connection, replaces its PubSub with a new one subscribed to every channel and group
it had, retrying with backoff until Redis answers. Until then the layer is `deaf`, and
the consumer refuses messages (SERVICE_UNAVAILABLE) rather than publish what this
process's members would not receive. Messages other processes publish in that window do
not reach this process's members.

With several hosts (a comma-separated REDIS_URL), a group's channel lives on the shard that
owns the group in rooms.state.shards, where the message script publishes the room's events;
channels-redis' own hash (CRC32 over the channel name) would pick another. On a Redis
Cluster (REDIS_CLUSTER) one ClusterShard stands for them all, on sharded pub/sub
(rooms.layers.cluster_pubsub).

It also decodes a group message once per process, not once per member: every local member
gets the same dict (consumers never mutate events), so the work of a delivery, and the
frame rooms.server.frames builds from it, is shared as with the in-memory layer; and it
offers delivery by call (rooms.layers.fanout).
"""

import asyncio
import logging
import uuid
from collections.abc import Callable

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from channels_redis.utils import _wrap_close
from django.core.exceptions import ImproperlyConfigured

from rooms import internals
from rooms.core.queues import SingleReaderQueue
from rooms.layers.cluster_pubsub import ClusterShard
from rooms.layers.fanout import FANOUT, Members, Receiver
from rooms.layers.resubscribing import ResubscribingShard
from rooms.state import shards

logger = logging.getLogger(__name__)


class ResilientLoopLayer(RedisPubSubLoopLayer):
    """The per-event-loop layer, with resubscribing shards."""

    def __init__(self, *args, cluster: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if cluster:  # one connection to the whole cluster (rooms.layers.cluster_pubsub)
            urls = [shard.host["address"] for shard in self._shards]
            self._shards = [ClusterShard(urls, self.receive_message)]
        else:
            self._shards = [ResubscribingShard(shard.host, self) for shard in self._shards]
        self.members = Members()
        self._group_channel = f"{self.prefix}__group__"

    def _get_group_channel_name(self, group: str) -> str:
        # The group in a hash tag: in a Redis Cluster the room's keys and channel share
        # its slot (rooms.state.shards.tagged).
        return f"{self.prefix}__group__{shards.tagged(group)}"

    def receive_message(self, message: dict) -> None:
        """A message on one of this layer's channels: a member's own, or a group's, whose
        message is decoded once and handed to every local member."""
        name = message["channel"]
        name = name.decode() if isinstance(name, bytes) else name
        if name in self.members.controls:
            self.members.control(name, self.channel_layer.deserialize(message["data"]))
        elif name in self.channels:
            self.channels[name].put_nowait(message["data"])
        elif members := self.groups.get(name):
            event = self.channel_layer.deserialize(message["data"])
            observer = self.channel_layer.observer
            if observer is not None:
                observer(name, event)
            self.members.deliver(members, event, self.queue)

    def _get_shard(self, channel_or_group_name: str) -> ResubscribingShard:
        # A group's channel by its group, as rooms.state.clients picks the room's shard.
        name = channel_or_group_name
        if name.startswith(self._group_channel):
            name = shards.untagged(name[len(self._group_channel) :])
        return self._shards[shards.shard_of(name, len(self._shards))]

    def attach(self, channel: str, receiver: Receiver, control: Receiver) -> None:
        """Call `receiver` with the channel's group messages as they arrive, and `control`
        with messages sent to the channel itself."""
        self.members.attach(channel, receiver, control)

    def queue(self, channel: str, message: dict) -> None:
        """Queue a group message for a member that reads its channel."""
        queue = self.channels.get(channel)
        if queue is not None:
            queue.put_nowait(message)

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A channel of this process's own, subscribed on a shard that answers: a member's
        own channel (evictions, access changes) must work while its room's shard does,
        whichever other shard is down."""
        channel = self._channel_name(prefix)
        first = self._shards.index(self._get_shard(channel))
        # Shards not known to be down first, the random name's own shard first among them.
        order = sorted(range(len(self._shards)), key=lambda i: (self._shards[i].lost, i != first))
        for index in order[:-1]:
            try:
                return await self._subscribe_on(index, channel, prefix)
            except Exception:
                logger.info("shard %d refused a new channel; trying another", index)
        return await self._subscribe_on(order[-1], channel, prefix)

    def _channel_name(self, prefix: str) -> str:
        return f"{self.prefix}{prefix}{uuid.uuid4().hex}"

    async def _subscribe_on(self, index: int, channel: str, prefix: str) -> str:
        while self._shards.index(self._get_shard(channel)) != index:
            channel = self._channel_name(prefix)
        try:
            await self._subscribe_to_channel(channel)
        except BaseException:
            self.channels.pop(channel, None)
            raise
        return channel

    async def _subscribe_to_channel(self, channel: str) -> None:
        # channels-redis', with a lighter queue: it holds only what is sent to the channel
        # itself, and one consumer reads it.
        self.channels[channel] = SingleReaderQueue()
        await self._get_shard(channel).subscribe(channel)

    async def detach(self, channel: str) -> None:
        """Forget the channel's receivers and unsubscribe it, as a cancelled receive does."""
        self.members.forget(channel)
        if self.channels.pop(channel, None) is not None:
            self._get_shard(channel).unsubscribe_soon(channel)

    async def flush(self) -> None:
        self.members.clear()
        await super().flush()

    def deaf_to(self, group: str) -> bool:
        """The group's shard lost its subscriptions: events published now would not all
        arrive here (other shards' groups are unaffected)."""
        return self._get_shard(self._get_group_channel_name(group)).lost


class ResilientRedisPubSubChannelLayer(RedisPubSubChannelLayer):
    """RedisPubSubChannelLayer (CHANNEL_LAYER=redis-pubsub) that recovers from outages.

    `observer`, when set, is called once per group message this process receives, with the
    group's channel name and the message, before any member gets it (rooms.state.sequence
    follows the ids going by)."""

    extensions = ["groups", "flush", FANOUT]
    observer: Callable[[str, dict], None] | None = None

    def __init__(self, *args, serializer_format: str = "msgpack", **kwargs) -> None:
        internals.require("channels_redis")
        # rooms.state.redis_sequence publishes room events itself, in this layer's format:
        # plain msgpack. Encrypted or otherwise serialized, every member would drop them.
        if serializer_format != "msgpack" or kwargs.get("symmetric_encryption_keys"):
            raise ImproperlyConfigured(
                "CHANNEL_LAYER=redis-pubsub publishes room events in channels-redis' msgpack"
                " format itself: its serializer_format must stay msgpack, without"
                " symmetric_encryption_keys."
            )
        super().__init__(*args, serializer_format=serializer_format, **kwargs)

    def deserialize(self, message: bytes | dict) -> dict:
        # Group messages arrive decoded already (ResubscribingShard._receive_message).
        return message if isinstance(message, dict) else super().deserialize(message)

    def _get_layer(self) -> ResilientLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = ResilientLoopLayer(
                *self._args, **self._kwargs, channel_layer=self
            )
            _wrap_close(self, loop)
        return layer
