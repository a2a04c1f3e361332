"""Per-room message ids and recent caches in Redis, shared by every process of a deployment
(the interface of rooms.state.sequence).

With Redis pub/sub, an INCR followed by a PUBLISH lets two processes publish out of id order,
so one Lua script assigns the id and the server time, adds the message to the room's recent
cache (a sorted set scored by id, bounded in messages and bytes) and publishes the
channel-layer message, all at once; a join is stamped and published the same way.

Ids never go backwards, whatever Redis forgets (a restart without persistence, an eviction,
a failover to a replica that lagged, an idle room's keys expiring after ROOM_KEY_TTL): each
process knows, for every room it has members in, the highest id it issued or saw go by, and
the scripts never issue an id at or below it; when a room's counter is missing they change
nothing and answer MISSING, and are run again with the database's last id folded in.
"""

from collections.abc import Callable

import msgpack

from rooms.core import protocol
from rooms.state import batches, clients, last_ids, lua, shards
from rooms.state.rooms import RoomState, RoomStates
from rooms.state.sequence import Stamp

# Both scripts answer -1, and change nothing, when the room's counter is missing (Redis
# lost it, or the room's keys expired) and the caller's floor was not read from the
# database just now (`fresh`): the caller reads it and calls again.
_MESSAGE_SCRIPT = batches.script(lua.script("message"))  # rooms/state/lua/message.lua
_JOIN_SCRIPT = batches.script(lua.script("join"))
# In a Redis Cluster, room events go by sharded pub/sub: published on the room's master only.
_SHARDED = {
    script: batches.script(script.source.replace("'PUBLISH'", "'SPUBLISH'"))
    for script in (_MESSAGE_SCRIPT, _JOIN_SCRIPT)
}

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
        prefix: str,
        cache_size: int,
        cache_bytes: int,
        key_ttl: float,
        publishes: bool,
        pending: Callable[[str], int],
        sweep: float,
    ) -> None:
        self._prefix = prefix
        self._cache_size = cache_size
        self._cache_bytes = cache_bytes
        self._ttl_ms = int(key_ttl * 1000)
        self.publishes = publishes
        self._pending = pending
        self.rooms = RoomStates(pending, sweep)
        self._group_channel = f"{prefix}__group__"

    def _keys(self, group: str) -> tuple[str, str, str, str]:
        # One hash tag: in a Redis Cluster all four share the room's slot.
        tag = shards.tagged(group)
        return (
            f"{self._prefix}:seq:{tag}",
            f"{self._prefix}:recent:{tag}",
            f"{self._prefix}:recent-bytes:{tag}",
            f"{self._group_channel}{tag}",
        )

    def _hold(self, group: str, room: str) -> RoomState:
        state = self.rooms.hold(group, room)
        if state.floor is None:
            state.floor = self._pending(room)  # this process's own ids not yet written
        return state

    async def _stamp(self, group: str, state: RoomState, script, keys, args: list) -> object:
        """Run `script` on the room's shard (batched, rooms.state.batches) with the state's
        floor; once more with the database's last id when Redis has lost the room's counter."""
        shard = clients.shard_for(group)
        if clients.cluster():
            script = _SHARDED[script]
        result = await batches.call(shard, script, keys, [state.floor, 0, *args])
        if result == MISSING:
            stored = await last_ids.stored_last_id(state.room)
            state.floor = max(state.floor, stored)
            result = await batches.call(shard, script, keys, [state.floor, 1, *args])
        return result

    def observe(self, channel: str, event: dict) -> None:
        """A room event went by on a group channel: no later id may be at or below its id."""
        state = self.rooms.get(shards.untagged(channel[len(self._group_channel) :]))
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
                group,
                state,
                _MESSAGE_SCRIPT,
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
            group,
            state,
            _JOIN_SCRIPT,
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
        found = await clients.for_name(group).zrevrangebyscore(
            self._keys(group)[1], upto, f"({after}", start=0, num=limit, withscores=True
        )
        return [(int(score), frame.decode()) for frame, score in reversed(found)]

    def forget(self, group: str, message_id: int) -> None:
        """A moderator deleted the message: drop it from the recent cache (synchronous)."""
        cache_key, size_key = self._keys(group)[1:3]
        client = clients.connect_sync(group)
        frames = client.zrangebyscore(cache_key, message_id, message_id)
        if frames and client.zrem(cache_key, *frames):
            client.decrby(size_key, sum(len(frame) for frame in frames))

    async def close(self) -> None:
        """Forget every room (the Redis client is closed by rooms.state.clients)."""
        self.rooms.clear()
