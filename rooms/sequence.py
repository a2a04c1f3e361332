"""Per-room message ids, assigned atomically with the publish, and the recent-message cache.

Every client must see a room's ids strictly increasing (issue 4). With Redis pub/sub, an
INCR followed by a PUBLISH lets two processes publish out of id order, so one Lua script
assigns the id and the server time, adds the message to the room's recent cache (a sorted
set scored by id) and publishes the channel-layer message, all at once. In-process, the
same steps run under a per-room lock with the in-memory layer's synchronous enqueue.

A join is published the same way, stamped with the room's last id at that instant: the
joiner replays history up to that id and takes everything after it live (rooms.history).
Ids continue from the database's highest after a restart or a Redis reset (`_floor`).
"""

import asyncio
import functools
import logging
import time
import weakref
from collections import defaultdict, deque
from functools import cache
from typing import NamedTuple

import msgpack
import redis
import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings

from rooms import protocol, redis_client
from rooms.models import Room

logger = logging.getLogger(__name__)

EVENT = "room.event"  # the channel-layer message type every room event carries


class Stamp(NamedTuple):
    """What the sequence assigned to a message."""

    id: int
    ts: int


def room_event(**fields: object) -> dict:
    """A room event for the channel layer: its type, publish time (rooms.metrics), fields."""
    return {"type": EVENT, "sent": time.time(), **fields}


def now_ms() -> int:
    """Server time in ms since the epoch, as on the wire."""
    return int(time.time() * 1000)


def _load_floor(room: str) -> int:
    last = Room.objects.filter(name=room).values_list("last_id", flat=True).first()
    return last or 0


class _Floors:
    """Each room's highest persisted id, loaded once per process. Concurrent first callers
    share one query and resume in the order they called, so joins keep their order."""

    def __init__(self) -> None:
        self._known: dict[str, int] = {}
        self._loading: dict[str, asyncio.Task] = {}

    async def get(self, room: str) -> int:
        if room in self._known:
            return self._known[room]
        loading = self._loading.get(room)
        if loading is None:
            loading = self._loading[room] = asyncio.ensure_future(
                database_sync_to_async(_load_floor)(room)
            )
            loading.add_done_callback(functools.partial(self._loaded, room))
        return await asyncio.shield(loading)

    def _loaded(self, room: str, task: asyncio.Task) -> None:
        del self._loading[room]
        if not task.cancelled() and task.exception() is None:
            self._known[room] = task.result()


class InProcessSequence:
    """Counters and recent messages in this process's memory (the in-memory layer)."""

    def __init__(self, cache_size: int) -> None:
        self._cache_size = cache_size
        self._floors = _Floors()
        self._last: dict[str, int] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._recent: dict[str, deque[tuple[int, str]]] = {}
        self._forgotten: set[tuple[str, int]] = set()

    async def _ready(self, group: str, room: str) -> None:
        if group not in self._last:
            floor = await self._floors.get(room)
            self._last.setdefault(group, floor)
            self._recent.setdefault(group, deque(maxlen=self._cache_size))

    async def publish(
        self, layer, group: str, room: str, nickname: str, text: str, event: dict
    ) -> Stamp:
        """Assign the next id and publish `event` with the message's frames to the room."""
        async with self._locks[group]:  # taken first: callers go in call order (FIFO)
            await self._ready(group, room)
            message_id = self._last[group] = self._last[group] + 1
            ts = now_ms()
            frames = protocol.message(room, nickname, text, message_id, ts)
            self._recent[group].append((message_id, frames[protocol.JSON]))
            await layer.group_send(group, {**event, **frames})
        return Stamp(message_id, ts)

    async def publish_join(self, layer, group: str, room: str, channel: str, event: dict) -> None:
        """Publish a join event stamped with the joiner's channel and the room's last id."""
        async with self._locks[group]:
            await self._ready(group, room)
            await layer.group_send(group, {**event, "joiner": channel, "last": self._last[group]})

    async def recent(self, group: str, after: int, upto: int, limit: int) -> list[tuple[int, str]]:
        """Cached messages with after < id <= upto, the newest `limit`, oldest first."""
        found = []
        for message_id, frame in reversed(self._recent.get(group, ())):
            if len(found) == limit or message_id <= after:
                break
            if message_id <= upto and (group, message_id) not in self._forgotten:
                found.append((message_id, frame))
        return found[::-1]

    def forget(self, group: str, message_id: int) -> None:
        """A moderator deleted the message: never replay it (callable from any thread)."""
        self._forgotten.add((group, message_id))

    async def close(self) -> None:
        """Nothing to release in-process."""


_MESSAGE_SCRIPT = """
-- KEYS: 1 the room's id counter, 2 its recent cache, 3 the layer's group channel
-- ARGV: 1 id floor, 2 cache size, 3-5 the JSON frame cut at id and ts,
--       6 the layer message up to its "json" value ('' when the caller publishes)
local id = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if id <= floor then
  id = floor + 1
  redis.call('SET', KEYS[1], string.format('%d', id))
end
local now = redis.call('TIME')
local ts = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local frame = ARGV[3] .. string.format('%d', id) .. ARGV[4] .. string.format('%d', ts) .. ARGV[5]
redis.call('ZADD', KEYS[2], id, frame)
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -1 - tonumber(ARGV[2]))
if ARGV[6] ~= '' then
  redis.call('PUBLISH', KEYS[3], ARGV[6] .. cmsgpack.pack(frame))
end
return {id, ts}
"""

_JOIN_SCRIPT = """
-- KEYS: 1 the room's id counter, 2 the layer's group channel
-- ARGV: 1 id floor, 2 the layer message up to its "last" value ('' when the caller publishes)
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if last < floor then
  last = floor
  redis.call('SET', KEYS[1], string.format('%d', last))
end
if ARGV[2] ~= '' then
  redis.call('PUBLISH', KEYS[2], ARGV[2] .. cmsgpack.pack(last))
end
return last
"""


def _layer_prefix(fields: dict, last_key: str) -> bytes:
    """A msgpack map of `fields` plus `last_key`, missing only the last key's value."""
    out = bytearray(msgpack.packb({}))
    out[0] |= len(fields) + 1  # fixmap header: 0x80 | number of pairs (at most 15)
    for key, value in fields.items():
        out += msgpack.packb(key) + msgpack.packb(value)
    return bytes(out + msgpack.packb(last_key))


class _Connection(NamedTuple):
    client: aioredis.Redis
    message: object
    join: object


class RedisSequence:
    """Counters and recent caches in Redis, shared by every process of a deployment.

    With the pub/sub layer the scripts publish in the layer's own format (msgpack, on
    channel `<prefix>__group__<group>`); with the list-based layer the caller publishes
    after the script, so ids stay unique but may reach clients out of order.
    """

    def __init__(self, url: str, prefix: str, cache_size: int, publishes: bool) -> None:
        self._url = url
        self._prefix = prefix
        self._cache_size = cache_size
        self._publishes = publishes
        self._floors = _Floors()
        # redis.asyncio clients belong to the event loop that first used them.
        self._connections: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = self._connections.get(loop)
        if connection is None:
            client = redis_client.connect(self._url)
            connection = _Connection(
                client,
                client.register_script(_MESSAGE_SCRIPT),
                client.register_script(_JOIN_SCRIPT),
            )
            self._connections[loop] = connection
        return connection

    def _keys(self, group: str) -> tuple[str, str, str]:
        return (
            f"{self._prefix}:seq:{group}",
            f"{self._prefix}:recent:{group}",
            f"{self._prefix}__group__{group}",
        )

    async def publish(
        self, layer, group: str, room: str, nickname: str, text: str, event: dict
    ) -> Stamp:
        """Assign the next id and publish `event` with the message's frames, atomically."""
        floor = await self._floors.get(room)
        text_frame, parts = protocol.message_parts(room, nickname, text)
        head = _layer_prefix({**event, protocol.TEXT: text_frame}, protocol.JSON)
        message_id, ts = await self._connection().message(
            keys=self._keys(group),
            args=[floor, self._cache_size, *parts, head if self._publishes else b""],
        )
        if not self._publishes:
            frames = protocol.message(room, nickname, text, message_id, ts)
            await layer.group_send(group, {**event, **frames})
        return Stamp(message_id, ts)

    async def publish_join(self, layer, group: str, room: str, channel: str, event: dict) -> None:
        """Publish a join event stamped with the joiner's channel and the room's last id."""
        floor = await self._floors.get(room)
        head = _layer_prefix({**event, "joiner": channel}, "last")
        seq_key, _, channel_key = self._keys(group)
        last = await self._connection().join(
            keys=[seq_key, channel_key], args=[floor, head if self._publishes else b""]
        )
        if not self._publishes:
            await layer.group_send(group, {**event, "joiner": channel, "last": last})

    async def recent(self, group: str, after: int, upto: int, limit: int) -> list[tuple[int, str]]:
        """Cached messages with after < id <= upto, the newest `limit`, oldest first."""
        found = await self._connection().client.zrevrangebyscore(
            self._keys(group)[1], upto, f"({after}", start=0, num=limit, withscores=True
        )
        return [(int(score), frame.decode()) for frame, score in reversed(found)]

    def forget(self, group: str, message_id: int) -> None:
        """A moderator deleted the message: drop it from the recent cache (synchronous)."""
        with redis.Redis.from_url(self._url) as client:
            client.zremrangebyscore(self._keys(group)[1], message_id, message_id)

    async def close(self) -> None:
        """Close this event loop's Redis connection."""
        connection = self._connections.pop(asyncio.get_running_loop(), None)
        if connection is not None:
            await connection.client.aclose()


@cache
def get_sequence() -> InProcessSequence | RedisSequence:
    """The sequence matching the configured channel layer."""
    if settings.REDIS_URL:
        return RedisSequence(
            settings.REDIS_URL,
            settings.REDIS_PREFIX,
            settings.ROOMS_HISTORY_MAX,
            publishes=settings.CHANNEL_LAYER == "redis-pubsub",
        )
    return InProcessSequence(settings.ROOMS_HISTORY_MAX)
