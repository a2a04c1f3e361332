"""Per-room message ids, assigned atomically with the publish, and the recent-message cache:
the one home of room events on the channel layer.

Every client must see a room's ids strictly increasing. A message is published with its id
under its room's lock, and a join stamped with the room's last id at that instant: the
joiner replays history up to that id and takes everything after it live
(rooms.state.history). Notices without an id (leaves, members back after Redis forgot them)
go out through `announce`. This module keeps ids and the recent cache in this process's
memory (the in-memory layer); rooms.state.redis_sequence keeps them in Redis, shared by
every process, with the same interface.

Ids never go backwards: they continue from the database's last id when a room comes into
use. Recent caches are bounded in messages (HISTORY_MAX) and in bytes (RECENT_CACHE_BYTES).
"""

from collections.abc import Callable
from typing import NamedTuple

from rooms.core import protocol
from rooms.core.events import now_ms, room_event
from rooms.core.protocol import Frames
from rooms.state import last_ids
from rooms.state.rooms import RoomState, RoomStates


class Stamp(NamedTuple):
    """What the sequence assigned to a message."""

    id: int
    ts: int


async def announce(layer, group: str, frames: Frames) -> None:
    """Publish a notice without an id (a leave, a member back) to every member of the room."""
    await layer.group_send(group, room_event(**frames))


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
            stored = await last_ids.stored_last_id(state.room)
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
