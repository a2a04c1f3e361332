"""Who is in which room, with nicknames unique per room: two nicknames are the same when
their `protocol.nickname_key` is (case, width and look-alike characters folded).

Two implementations of one small interface: in this process's memory (the in-memory
layer), and in Redis, shared by every process. In Redis each process holds its members
under its own id and renews a heartbeat every PRESENCE_TTL/3 seconds; a process that
misses its heartbeat for PRESENCE_TTL seconds is dead, and the next heartbeat of any
live process removes its members and announces their leave (so within PRESENCE_TTL plus
one heartbeat period). Keys, all under REDIS_PREFIX:

    <p>:members:<group>   hash   nickname key -> {"n", "p", "c", "r", "t"} (JSON)
    <p>:procs             zset   process id -> heartbeat deadline (ms, Redis clock)
    <p>:proc:<id>         set    groups where that process has members
    <p>:active            hash   group -> room name, for every room with members
    <p>:epoch             string a token that changes when Redis loses these keys

Redis may forget all this (a restart without persistence, a failover to a replica that
lagged, eviction). Each process keeps its own members' claims and, on the heartbeat that
finds its record gone, claims them again (`restore`), so members, member counts and unique
nicknames come back within PRESENCE_TTL/3. Two claims of one nickname can then meet:
- Redis lost its memory (the epoch changed): the member who joined first keeps the name;
  a member who took it meanwhile on another process is closed with NICKNAME_TAKEN, 4409.
- this process was taken for dead (it missed heartbeats for PRESENCE_TTL, its members'
  leaves were announced): names taken since stay taken, and this process's members who
  held them are closed with 4409; the others are announced joining again.
"""

import asyncio
import logging
import uuid
import weakref
from functools import cache
from typing import NamedTuple

import orjson
import redis.asyncio as aioredis
from channels.layers import get_channel_layer
from django.conf import settings

from rooms.core import errors, protocol
from rooms.core.errors import ClientError
from rooms.core.groups import room_group
from rooms.state import backends as redis_client
from rooms.state.sequence import evict, now_ms, room_event

logger = logging.getLogger(__name__)


def nickname_taken(nickname: str) -> ClientError:
    """Fatal: another member of the room holds this nickname."""
    return ClientError(
        errors.NICKNAME_TAKEN,
        f"The nickname {nickname!r} is taken in this room; choose another.",
        errors.WS_4409_NICKNAME_TAKEN,
    )


def _sorted(nicknames) -> list[str]:
    return sorted(nicknames, key=lambda nickname: (nickname.casefold(), nickname))


class InProcessPresence:
    """Members in this process's memory."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, tuple[str, str]]] = {}  # group -> key -> (nick, channel)
        self._names: dict[str, str] = {}  # group -> room name

    async def claim(self, room: str, group: str, nickname: str, channel: str) -> None:
        """Make `nickname` this channel's in the room, or raise NICKNAME_TAKEN."""
        members = self._rooms.setdefault(group, {})
        key = protocol.nickname_key(nickname)
        if key in members:
            raise nickname_taken(nickname)
        members[key] = (nickname, channel)
        self._names[group] = room

    async def release(self, room: str, group: str, nickname: str, channel: str) -> None:
        """Free the nickname, if this channel still holds it."""
        members = self._rooms.get(group, {})
        key = protocol.nickname_key(nickname)
        if members.get(key, (None, None))[1] == channel:
            del members[key]
        if not members:
            self._rooms.pop(group, None)
            self._names.pop(group, None)

    async def members(self, group: str) -> list[str]:
        """Nicknames in the room, sorted case-insensitively."""
        return _sorted(nickname for nickname, _ in self._rooms.get(group, {}).values())

    async def occupied(self) -> dict[str, int]:
        """Room name -> member count, for every room with members."""
        return {self._names[group]: len(members) for group, members in self._rooms.items()}

    async def close(self) -> None:
        """Nothing to release in-process."""


_CLAIM = """
-- KEYS: 1 members hash, 2 this process's groups, 3 active rooms
-- ARGV: 1 nickname key, 2 member entry, 3 group, 4 room name
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
return 1
"""

_RELEASE = """
-- KEYS: 1 members hash, 2 active rooms; ARGV: 1 nickname key, 2 member entry, 3 group
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('HDEL', KEYS[2], ARGV[3])
end
"""

_RESTORE = """
-- KEYS: 1 members hash, 2 this process's groups, 3 active rooms
-- ARGV: 1 nickname key, 2 member entry, 3 group, 4 room name, 5 claimed at (ms),
--       6 '1': take the name from a later claim
-- Returns {1, the entry it was taken from or ''} when the name is this entry's again,
-- {2, ''} when it still was, {0, the holder's entry} when another claim keeps it.
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and held ~= ARGV[2] then
  local since = cjson.decode(held).t or 0
  if ARGV[6] ~= '1' or since <= tonumber(ARGV[5]) then
    return {0, held}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
if held == ARGV[2] then
  return {2, ''}
end
return {1, held or ''}
"""

_HEARTBEAT = """
-- KEYS: 1 process deadlines, 2 epoch; ARGV: 1 process id, 2 ttl in ms, 3 a new epoch
-- Renews this process's deadline; returns whether it was missing, the epoch (set anew
-- if Redis lost it), and the processes whose deadline has passed.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local missing = redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[1])
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[2], epoch)
end
return {missing, epoch, redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ms)}
"""

_REAP = """
-- KEYS: 1 process deadlines, 2 the dead process's groups, 3 active rooms
-- ARGV: 1 the dead process id, 2 members hash key prefix
-- Only the first reaper of a process gets its members back (ZREM returns 1 once).
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 and ARGV[3] ~= 'self' then
  return {}
end
local gone = {}
for _, group in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local key = ARGV[2] .. group
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    if cjson.decode(fields[i + 1]).p == ARGV[1] then
      redis.call('HDEL', key, fields[i])
      table.insert(gone, fields[i + 1])
    end
  end
  if redis.call('HLEN', key) == 0 then
    redis.call('HDEL', KEYS[3], group)
  end
end
redis.call('DEL', KEYS[2])
return gone
"""


class Claim(NamedTuple):
    """A nickname this process holds for one of its members."""

    room: str
    group: str
    key: str
    entry: bytes
    since: int  # ms since the epoch, when the member joined


class RedisPresence:
    """Members in Redis, shared by every process; dead processes expire, and a process
    restores its members when Redis forgot them (module docstring)."""

    def __init__(self, url: str, prefix: str, ttl: float) -> None:
        self._url = url
        self._prefix = prefix
        self._ttl_ms = int(ttl * 1000)
        self._interval = ttl / 3
        self.process_id = uuid.uuid4().hex
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._heartbeat: asyncio.Task | None = None
        self._claims: dict[str, Claim] = {}  # channel -> its member's claim
        self._epoch: bytes | None = None

    def _client(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = redis_client.connect(self._url)
        return client

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self._prefix}:{kind}:{name}" if name else f"{self._prefix}:{kind}"

    async def claim(self, room: str, group: str, nickname: str, channel: str) -> None:
        """Make `nickname` this channel's in the room, atomically, or raise NICKNAME_TAKEN."""
        await self._ensure_heartbeat()
        since = now_ms()
        key = protocol.nickname_key(nickname)
        entry = orjson.dumps(
            {"n": nickname, "p": self.process_id, "c": channel, "r": room, "t": since}
        )
        claimed = await self._client().eval(
            _CLAIM,
            3,
            self._key("members", group),
            self._key("proc", self.process_id),
            self._key("active"),
            key,
            entry,
            group,
            room,
        )
        if not claimed:
            raise nickname_taken(nickname)
        self._claims[channel] = Claim(room, group, key, entry, since)

    async def release(self, room: str, group: str, nickname: str, channel: str) -> None:
        """Free the nickname, if this channel still holds it."""
        claim = self._claims.pop(channel, None)
        if claim is None:
            return
        await self._client().eval(
            _RELEASE,
            2,
            self._key("members", group),
            self._key("active"),
            claim.key,
            claim.entry,
            group,
        )

    async def members(self, group: str) -> list[str]:
        """Nicknames in the room, sorted case-insensitively."""
        entries = await self._client().hvals(self._key("members", group))
        return _sorted(orjson.loads(entry)["n"] for entry in entries)

    async def occupied(self) -> dict[str, int]:
        """Room name -> member count, for every room with members."""
        client = self._client()
        active = await client.hgetall(self._key("active"))
        async with client.pipeline(transaction=False) as pipe:
            for group in active:
                pipe.hlen(self._key("members", group.decode()))
            counts = await pipe.execute()
        names = [name.decode() for name in active.values()]
        return {name: count for name, count in zip(names, counts, strict=True) if count}

    async def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            await self.beat()  # registered before the first claim, not a period later
            self._heartbeat = asyncio.ensure_future(self._beat_forever())

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.beat()
            except Exception:
                logger.exception("presence heartbeat failed; retrying")

    async def beat(self) -> None:
        """Renew this process's deadline; restore its members if Redis forgot them; remove
        and announce the members of dead processes."""
        missing, epoch, dead = await self._client().eval(
            _HEARTBEAT, 2, self._key("procs"), self._key("epoch"), self.process_id,
            self._ttl_ms, uuid.uuid4().hex,
        )  # fmt: skip
        if missing and self._claims:
            await self.restore(lost=epoch != self._epoch)
        self._epoch = epoch
        for process_id in dead:
            await self._reap(process_id.decode(), own=False)

    async def restore(self, lost: bool) -> None:
        """Claim this process's members' nicknames again (module docstring): when Redis
        `lost` its memory the earlier claim of a name wins, otherwise the one in Redis."""
        layer = get_channel_layer()
        logger.warning(
            "presence: %s; restoring %d members",
            "Redis lost its keys" if lost else "this process was taken for dead",
            len(self._claims),
        )
        claims = list(self._claims.items())
        async with self._client().pipeline(transaction=False) as pipe:
            for _, claim in claims:
                pipe.eval(
                    _RESTORE,
                    3,
                    self._key("members", claim.group),
                    self._key("proc", self.process_id),
                    self._key("active"),
                    claim.key,
                    claim.entry,
                    claim.group,
                    claim.room,
                    claim.since,
                    "1" if lost else "",
                )
            results = await pipe.execute()
        for (channel, claim), (restored, held) in zip(claims, results, strict=True):
            nickname = orjson.loads(claim.entry)["n"]
            if not restored:
                self._claims.pop(channel, None)
                await layer.send(channel, evict(nickname_taken(nickname)))
            elif held:
                await layer.send(orjson.loads(held)["c"], evict(nickname_taken(nickname)))
            elif restored == 1 and not lost:
                frames = protocol.joined(claim.room, nickname, now_ms())
                await layer.group_send(claim.group, room_event(**frames))

    async def _reap(self, process_id: str, own: bool) -> None:
        gone = await self._client().eval(
            _REAP,
            3,
            self._key("procs"),
            self._key("proc", process_id),
            self._key("active"),
            process_id,
            f"{self._prefix}:members:",
            "self" if own else "",
        )
        layer = get_channel_layer()
        for raw in gone:
            entry = orjson.loads(raw)
            logger.info("%s left %s: its process %s stopped", entry["n"], entry["r"], process_id)
            frames = protocol.left(entry["r"], entry["n"], now_ms())
            await layer.group_send(room_group(entry["r"]), room_event(**frames))

    async def close(self) -> None:
        """Stop the heartbeat; remove this process's members, announcing their leave."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
            await self._reap(self.process_id, own=True)
        self._claims.clear()
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


@cache
def get_presence() -> InProcessPresence | RedisPresence:
    """The presence store matching the configuration: Redis when REDIS_URL is set."""
    if settings.REDIS_URL:
        return RedisPresence(settings.REDIS_URL, settings.REDIS_PREFIX, settings.ROOMS_PRESENCE_TTL)
    return InProcessPresence()
