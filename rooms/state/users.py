"""How many connections each signed-in user holds: MAX_CONNECTIONS_PER_USER, across every
process when Redis is used.

In Redis each user has a sorted set of their connections (channel names), scored by a
deadline each process pushes forward for its own connections every PRESENCE_TTL/3 seconds:
the connections of a process that died stop counting within PRESENCE_TTL, with no reaping.
With several shards a user's set lives on the shard its key hashes to.
"""

import asyncio
import logging
import time
from collections import defaultdict

from rooms.core import errors
from rooms.state import clients, lua

logger = logging.getLogger(__name__)

_ACQUIRE = lua.script("user_acquire")  # rooms/state/lua/user_acquire.lua


class InProcessUsers:
    """Connections per user in this process."""

    def __init__(self) -> None:
        self._held: defaultdict[int, set[str]] = defaultdict(set)

    async def acquire(self, user_id: int, channel: str, limit: int) -> None:
        """Count one more connection of the user, or raise TOO_MANY_CONNECTIONS."""
        held = self._held[user_id]
        if len(held) >= limit:
            raise errors.too_many_user_connections(limit)
        held.add(channel)

    async def release(self, user_id: int, channel: str) -> None:
        held = self._held.get(user_id)
        if held is not None:
            held.discard(channel)
            if not held:
                del self._held[user_id]

    async def close(self) -> None:
        self._held.clear()


class RedisUsers:
    """Connections per user in Redis, shared by every process."""

    def __init__(self, prefix: str, ttl: float) -> None:
        self._prefix = prefix
        self._ttl_ms = int(ttl * 1000)
        self._interval = ttl / 3
        self._held: dict[str, int] = {}  # this process's connections: channel -> user id
        self._renewer: asyncio.Task | None = None

    def _key(self, user_id: int) -> str:
        return f"{self._prefix}:user:{user_id}"

    async def acquire(self, user_id: int, channel: str, limit: int) -> None:
        """Count one more connection of the user, or raise TOO_MANY_CONNECTIONS."""
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.ensure_future(self._renew_forever())
        key = self._key(user_id)
        counted = await clients.for_name(key).eval(_ACQUIRE, 1, key, channel, limit, self._ttl_ms)
        if not counted:
            raise errors.too_many_user_connections(limit)
        self._held[channel] = user_id

    async def release(self, user_id: int, channel: str) -> None:
        self._held.pop(channel, None)
        key = self._key(user_id)
        await clients.for_name(key).zrem(key, channel)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.renew()
            except Exception:
                logger.exception("renewing users' connections failed; retrying")

    async def renew(self) -> None:
        """Push this process's connections' deadlines forward (XX: released ones stay out)."""
        deadline = int(time.time() * 1000) + self._ttl_ms
        by_shard: defaultdict[int, list[tuple[str, str]]] = defaultdict(list)
        for channel, user_id in list(self._held.items()):
            key = self._key(user_id)
            by_shard[clients.shard_for(key)].append((key, channel))
        for shard, held in by_shard.items():
            async with clients.connect(shard).pipeline(transaction=False) as pipe:
                for key, channel in held:
                    pipe.zadd(key, {channel: deadline}, xx=True)
                    pipe.pexpire(key, self._ttl_ms)
                await pipe.execute()

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        self._held.clear()
