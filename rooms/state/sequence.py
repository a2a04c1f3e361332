"""Per-room message ids, assigned atomically with the publish, and the recent-message cache.

Every client must see a room's ids strictly increasing (issue 4). With Redis pub/sub, an
INCR followed by a PUBLISH lets two processes publish out of id order, so one Lua script
assigns the id and the server time, adds the message to the room's recent cache (a sorted
set scored by id) and publishes the channel-layer message, all at once. In-process, the
same steps run under a per-room lock with the in-memory layer's synchronous enqueue.

A join is published the same way, stamped with the room's last id at that instant: the
joiner replays history up to that id and takes everything after it live (rooms.state.history).

Ids never go backwards, whatever Redis forgets (a restart without persistence, an
eviction, a failover to a replica that lagged, an idle room's keys expiring): every id is
at least one above the room's floor, the highest of the database's last id when the room
became active in this process and every id this process has issued or seen since
(`RoomState.floor`); the scripts apply it atomically with the INCR.

A room's state in this process lives while it has local members (`publish_join` counts
one in, `leave` one out) and until its messages are written (rooms.state.history): memory
follows the rooms in use, not every room ever visited. Recent caches are bounded in
messages (HISTORY_MAX) and in bytes (RECENT_CACHE_BYTES); Redis keys of idle rooms expire
after ROOM_KEY_TTL.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from functools import cache
from typing import NamedTuple

import msgpack
import redis
import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from rooms.core import protocol
from rooms.core.errors import ClientError
from rooms.models import Room
from rooms.state import backends as redis_client

logger = logging.getLogger(__name__)

EVENT = "room.event"  # the channel-layer message type every room event carries
EVICT = "room.evict"  # sent to one member's channel: close it with the error it carries


class Stamp(NamedTuple):
    """What the sequence assigned to a message."""

    id: int
    ts: int


def room_event(**fields: object) -> dict:
    """A room event for the channel layer: its type, publish time (rooms.core.metrics), fields."""
    return {"type": EVENT, "sent": time.time(), **fields}


def evict(error: ClientError) -> dict:
    """A message for one member's channel: send it `error`, then close it."""
    return {"type": EVICT, "code": error.code, "message": error.message, "close": error.close_code}


def now_ms() -> int:
    """Server time in ms since the epoch, as on the wire."""
    return int(time.time() * 1000)


def _stored_last_id(room: str) -> int:
    last = Room.objects.filter(name=room).values_list("last_id", flat=True).first()
    return last or 0


class RoomState:
    """What this process keeps of one room while it is in use."""

    __slots__ = ("room", "holders", "floor", "lock", "recent", "size", "forgotten")

    def __init__(self, room: str) -> None:
        self.room = room
        self.holders = 0  # local members, and calls in progress
        self.floor: int | None = None  # no id is issued at or below it; None until known
        self.lock = asyncio.Lock()
        self.recent: deque[tuple[int, str, int]] = deque()  # (id, JSON frame, its bytes)
        self.size = 0  # bytes in `recent`
        self.forgotten: set[int] = set()  # ids in `recent` a moderator deleted


class RoomStates:
    """Room states by group: created on first use, dropped once a room has no holder and
    nothing of it waits to be written (`pending(room)`, the history writer's highest id
    still pending, 0 when none)."""

    def __init__(self, pending: Callable[[str], int], sweep_interval: float) -> None:
        self._pending = pending
        self._sweep_interval = sweep_interval
        self._states: dict[str, RoomState] = {}
        self._retiring: set[str] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._states)

    def get(self, group: str) -> RoomState | None:
        """The room's state, if it is in use in this process."""
        return self._states.get(group)

    def hold(self, group: str, room: str) -> RoomState:
        """The room's state, created if needed, held until the matching `release`."""
        state = self._states.get(group)
        if state is None:
            state = self._states[group] = RoomState(room)
        state.holders += 1
        return state

    def release(self, group: str) -> None:
        """Give back one hold; the state goes once unheld and its messages are written."""
        state = self._states.get(group)
        if state is None:
            return
        state.holders -= 1
        if state.holders > 0:
            return
        if not self._pending(state.room):
            del self._states[group]
        elif group not in self._retiring:
            self._retiring.add(group)
            if self._sweeper is None:
                loop = asyncio.get_running_loop()
                self._sweeper = loop.call_later(self._sweep_interval, self.sweep)

    def sweep(self) -> None:
        """Drop the unheld states whose messages have been written since; check again later
        for the others (the database may be down)."""
        self._sweeper = None
        for group in list(self._retiring):
            state = self._states.get(group)
            if state is None or state.holders > 0:
                self._retiring.discard(group)
            elif not self._pending(state.room):
                self._retiring.discard(group)
                del self._states[group]
        if self._retiring:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._sweep_interval, self.sweep)

    def clear(self) -> None:
        """Forget every room (the process is stopping)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._states.clear()
        self._retiring.clear()


class InProcessSequence:
    """Counters and recent messages in this process's memory (the in-memory layer)."""

    def __init__(
        self, cache_size: int, cache_bytes: int, pending: Callable[[str], int], sweep: float
    ) -> None:
        self._cache_size = cache_size
        self._cache_bytes = cache_bytes
        self._pending = pending
        self.rooms = RoomStates(pending, sweep)

    async def _floor(self, state: RoomState) -> int:
        """The room's last id: read once, when the room comes into use (call it under the
        room's lock, which keeps its callers in order)."""
        if state.floor is None:
            stored = await database_sync_to_async(_stored_last_id)(state.room)
            state.floor = max(stored, self._pending(state.room))
        return state.floor

    async def publish(
        self, layer, group: str, room: str, nickname: str, text: str, event: dict
    ) -> Stamp:
        """Assign the next id and publish `event` with the message's frames to the room."""
        state = self.rooms.hold(group, room)
        try:
            async with state.lock:  # taken first: callers go in call order (FIFO)
                message_id = state.floor = await self._floor(state) + 1
                ts = now_ms()
                frames = protocol.message(room, nickname, text, message_id, ts)
                self._cache(state, message_id, frames[protocol.JSON])
                await layer.group_send(group, {**event, **frames, "id": message_id})
        finally:
            self.rooms.release(group)
        return Stamp(message_id, ts)

    def _cache(self, state: RoomState, message_id: int, frame: str) -> None:
        size = len(frame.encode())
        state.recent.append((message_id, frame, size))
        state.size += size
        while len(state.recent) > 1 and (
            len(state.recent) > self._cache_size or state.size > self._cache_bytes
        ):
            gone, _, gone_size = state.recent.popleft()
            state.size -= gone_size
            state.forgotten.discard(gone)

    async def publish_join(self, layer, group: str, room: str, channel: str, event: dict) -> None:
        """Count a member in and publish its join, stamped with its channel and the room's
        last id; the member must `leave` once gone, whatever happened here."""
        state = self.rooms.hold(group, room)
        async with state.lock:
            last = await self._floor(state)
            await layer.group_send(group, {**event, "joiner": channel, "last": last})

    def leave(self, group: str) -> None:
        """A member counted in by `publish_join` is gone."""
        self.rooms.release(group)

    async def recent(self, group: str, after: int, upto: int, limit: int) -> list[tuple[int, str]]:
        """Cached messages with after < id <= upto, the newest `limit`, oldest first."""
        state = self.rooms.get(group)
        if state is None:
            return []
        found = []
        for message_id, frame, _ in reversed(state.recent):
            if len(found) == limit or message_id <= after:
                break
            if message_id <= upto and message_id not in state.forgotten:
                found.append((message_id, frame))
        return found[::-1]

    def forget(self, group: str, message_id: int) -> None:
        """A moderator deleted the message: never replay it (callable from any thread)."""
        state = self.rooms.get(group)
        if state is not None and any(entry[0] == message_id for entry in list(state.recent)):
            state.forgotten.add(message_id)

    async def close(self) -> None:
        """Forget every room."""
        self.rooms.clear()


# Both scripts answer -1, and change nothing, when the room's counter is missing (Redis
# lost it, or the room's keys expired) and the caller's floor was not read from the
# database just now (`fresh`): the caller reads it and calls again.
_MESSAGE_SCRIPT = """
-- KEYS: 1 the room's id counter, 2 its recent cache, 3 the cache's size in bytes,
--       4 the layer's group channel
-- ARGV: 1 id floor, 2 fresh ('1': the floor includes the database's last id),
--       3 most messages cached, 4 most bytes cached, 5 key ttl (ms),
--       6-8 the JSON frame cut at id and ts, 9 the layer message up to its "id" value
--       ('' when the caller publishes), 10 the "json" key, packed
local id = redis.call('INCR', KEYS[1])
if id == 1 and ARGV[2] ~= '1' then
  redis.call('DEL', KEYS[1])
  return -1
end
local floor = tonumber(ARGV[1])
if id <= floor then
  id = floor + 1
  redis.call('SET', KEYS[1], string.format('%d', id))
end
local now = redis.call('TIME')
local ts = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local frame = ARGV[6] .. string.format('%d', id) .. ARGV[7] .. string.format('%d', ts) .. ARGV[8]
redis.call('ZADD', KEYS[2], id, frame)
local size = redis.call('INCRBY', KEYS[3], #frame)
local count = redis.call('ZCARD', KEYS[2])
while count > 1 and (count > tonumber(ARGV[3]) or size > tonumber(ARGV[4])) do
  local oldest = redis.call('ZPOPMIN', KEYS[2])
  size = redis.call('DECRBY', KEYS[3], #oldest[1])
  count = count - 1
end
for i = 1, 3 do
  redis.call('PEXPIRE', KEYS[i], ARGV[5])
end
if ARGV[9] ~= '' then
  redis.call('PUBLISH', KEYS[4], ARGV[9] .. cmsgpack.pack(id) .. ARGV[10] .. cmsgpack.pack(frame))
end
return {id, ts}
"""

_JOIN_SCRIPT = """
-- KEYS: 1 the room's id counter, 2 the layer's group channel
-- ARGV: 1 id floor, 2 fresh ('1': the floor includes the database's last id),
--       3 key ttl (ms), 4 the layer message up to its "last" value ('' when the caller
--       publishes)
local last = redis.call('GET', KEYS[1])
if not last and ARGV[2] ~= '1' then
  return -1
end
last = tonumber(last or '0')
local floor = tonumber(ARGV[1])
if last < floor then
  last = floor
  redis.call('SET', KEYS[1], string.format('%d', last), 'PX', ARGV[3])
elseif last > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
if ARGV[4] ~= '' then
  redis.call('PUBLISH', KEYS[2], ARGV[4] .. cmsgpack.pack(last))
end
return last
"""

MISSING = -1  # what the scripts answer when the room's counter is gone (above)


def _layer_prefix(fields: dict, next_key: str, more: int = 0) -> bytes:
    """A msgpack map of `fields`, `next_key` and `more` pairs after it, cut before the
    value of `next_key`: the script appends that value and the pairs that follow."""
    out = bytearray(msgpack.packb({}))
    out[0] |= len(fields) + 1 + more  # fixmap header: 0x80 | number of pairs (at most 15)
    for key, value in fields.items():
        out += msgpack.packb(key) + msgpack.packb(value)
    return bytes(out + msgpack.packb(next_key))


_JSON_KEY = msgpack.packb(protocol.JSON)


class _Connection(NamedTuple):
    client: aioredis.Redis
    message: object
    join: object


class RedisSequence:
    """Counters and recent caches in Redis, shared by every process of a deployment.

    With the pub/sub layer the scripts publish in the layer's own format (msgpack, on
    channel `<prefix>__group__<group>`); with the list-based layer the caller publishes
    after the script, so ids stay unique but may reach clients out of order. A room's
    floor here starts at 0 and rises with every id this process issues or sees go by
    (`observe`, called by the layer once per room event); the database's last id is read
    only when Redis has no counter for the room.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        cache_size: int,
        cache_bytes: int,
        key_ttl: float,
        publishes: bool,
        pending: Callable[[str], int],
        sweep: float,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._cache_size = cache_size
        self._cache_bytes = cache_bytes
        self._ttl_ms = int(key_ttl * 1000)
        self.publishes = publishes
        self._pending = pending
        self.rooms = RoomStates(pending, sweep)
        self._group_channel = f"{prefix}__group__"
        self._connection_: _Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _connection(self) -> _Connection:
        # redis.asyncio clients belong to the event loop that first used them.
        loop = asyncio.get_running_loop()
        if self._connection_ is None or self._loop is not loop:
            client = redis_client.connect(self._url)
            self._connection_ = _Connection(
                client,
                client.register_script(_MESSAGE_SCRIPT),
                client.register_script(_JOIN_SCRIPT),
            )
            self._loop = loop
        return self._connection_

    def _keys(self, group: str) -> tuple[str, str, str, str]:
        return (
            f"{self._prefix}:seq:{group}",
            f"{self._prefix}:recent:{group}",
            f"{self._prefix}:recent-bytes:{group}",
            f"{self._group_channel}{group}",
        )

    def _hold(self, group: str, room: str) -> RoomState:
        state = self.rooms.hold(group, room)
        if state.floor is None:
            state.floor = self._pending(room)  # this process's own ids not yet written
        return state

    async def _stamp(self, state: RoomState, script, keys, args: list) -> object:
        """Run `script` with the state's floor; once more with the database's last id
        when Redis has lost the room's counter."""
        result = await script(keys=keys, args=[state.floor, 0, *args])
        if result == MISSING:
            stored = await database_sync_to_async(_stored_last_id)(state.room)
            state.floor = max(state.floor, stored)
            result = await script(keys=keys, args=[state.floor, 1, *args])
        return result

    def observe(self, channel: str, event: dict) -> None:
        """A room event went by on a group channel: no later id may be at or below its id."""
        state = self.rooms.get(channel[len(self._group_channel) :])
        seen = event.get("id") or event.get("last")
        if state is not None and seen and seen > state.floor:
            state.floor = seen

    async def publish(
        self, layer, group: str, room: str, nickname: str, text: str, event: dict
    ) -> Stamp:
        """Assign the next id and publish `event` with the message's frames, atomically."""
        state = self._hold(group, room)
        try:
            text_frame, parts = protocol.message_parts(room, nickname, text)
            head = _layer_prefix({**event, protocol.TEXT: text_frame}, "id", more=1)
            message_id, ts = await self._stamp(
                state,
                self._connection().message,
                self._keys(group),
                [self._cache_size, self._cache_bytes, self._ttl_ms, *parts]
                + ([head, _JSON_KEY] if self.publishes else [b"", b""]),
            )
            state.floor = max(state.floor, message_id)
        finally:
            self.rooms.release(group)
        if not self.publishes:
            frames = protocol.message(room, nickname, text, message_id, ts)
            await layer.group_send(group, {**event, **frames, "id": message_id})
        return Stamp(message_id, ts)

    async def publish_join(self, layer, group: str, room: str, channel: str, event: dict) -> None:
        """Count a member in and publish its join, stamped with its channel and the room's
        last id; the member must `leave` once gone, whatever happened here."""
        state = self._hold(group, room)
        head = _layer_prefix({**event, "joiner": channel}, "last")
        seq_key, _, _, channel_key = self._keys(group)
        last = await self._stamp(
            state,
            self._connection().join,
            [seq_key, channel_key],
            [self._ttl_ms, head if self.publishes else b""],
        )
        state.floor = max(state.floor, last)
        if not self.publishes:
            await layer.group_send(group, {**event, "joiner": channel, "last": last})

    def leave(self, group: str) -> None:
        """A member counted in by `publish_join` is gone."""
        self.rooms.release(group)

    async def recent(self, group: str, after: int, upto: int, limit: int) -> list[tuple[int, str]]:
        """Cached messages with after < id <= upto, the newest `limit`, oldest first."""
        found = await self._connection().client.zrevrangebyscore(
            self._keys(group)[1], upto, f"({after}", start=0, num=limit, withscores=True
        )
        return [(int(score), frame.decode()) for frame, score in reversed(found)]

    def forget(self, group: str, message_id: int) -> None:
        """A moderator deleted the message: drop it from the recent cache (synchronous)."""
        cache_key, size_key = self._keys(group)[1:3]
        with redis.Redis.from_url(self._url) as client:
            frames = client.zrangebyscore(cache_key, message_id, message_id)
            if frames and client.zrem(cache_key, *frames):
                client.decrby(size_key, sum(len(frame) for frame in frames))

    async def close(self) -> None:
        """Close the Redis connection; forget every room."""
        self.rooms.clear()
        connection, self._connection_ = self._connection_, None
        if connection is not None and self._loop is asyncio.get_running_loop():
            await connection.client.aclose()


@cache
def get_sequence() -> InProcessSequence | RedisSequence:
    """The sequence matching the configured channel layer."""
    from rooms.state.history import get_writer  # rooms.state.history reads through the sequence

    pending = get_writer().highest_pending
    sweep = settings.ROOMS_FLUSH_INTERVAL
    if not settings.REDIS_URL:
        return InProcessSequence(
            settings.ROOMS_HISTORY_MAX, settings.ROOMS_RECENT_CACHE_BYTES, pending, sweep
        )
    sequence = RedisSequence(
        settings.REDIS_URL,
        settings.REDIS_PREFIX,
        settings.ROOMS_HISTORY_MAX,
        settings.ROOMS_RECENT_CACHE_BYTES,
        settings.ROOMS_ROOM_KEY_TTL,
        publishes=settings.CHANNEL_LAYER == "redis-pubsub",
        pending=pending,
        sweep=sweep,
    )
    if sequence.publishes:
        get_channel_layer().observer = sequence.observe
    return sequence
