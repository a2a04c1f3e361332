"""Who is in which room, in Redis, shared by every process (the interface of
rooms.state.presence).

Each process holds its members under its own id and renews a heartbeat every
PRESENCE_TTL/3 seconds; a process that misses its heartbeat for PRESENCE_TTL seconds is
dead, and the next heartbeat of any live process announces its members' leave, then removes
them (so within PRESENCE_TTL plus one heartbeat period; the leave comes first, so nobody is
announced joining under one of those names before it). Keys, all under REDIS_PREFIX:

    <p>:members:<group>   hash   nickname key -> {"n", "p", "c", "r", "t", "u"} (JSON)
    <p>:procs             zset   process id -> heartbeat deadline (ms, Redis clock)
    <p>:proc:<id>         set    groups where that process has members
    <p>:active            hash   group -> room name, for every room with members
    <p>:epoch             string a token that changes when Redis loses these keys

With several shards (rooms.state.shards) each shard holds these keys for its own rooms, and
a process beats, restores and reaps on each shard on its own: a shard that restarts or is
unreachable concerns only its rooms. In a Redis Cluster, presence has CLUSTER_SHARDS shards
of its own, each a hash tag (`<p>:{presence.<n>}:members:<group>` ...).

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
from functools import partial
from typing import NamedTuple

import orjson

from rooms.core import errors, names
from rooms.core.events import now_ms
from rooms.state import batches, clients, lua, shards
from rooms.state import redis_recovery as recovery
from rooms.state.presence import Member, sorted_nicknames
from rooms.state.retries import Retries

logger = logging.getLogger(__name__)


# rooms/state/lua/*.lua
# Claims are batched per event-loop turn (rooms.state.batches): a burst of joins shares
# pipelines, one per shard or cluster master. A release is sent at once: a leave is
# announced before its nickname is freed, and a turn's wait would widen that window.
_CLAIM = batches.script(lua.script("claim"))
_RELEASE = lua.script("release")
_HEARTBEAT = lua.script("heartbeat")


# In a Redis Cluster, presence is kept in this many hash tags, each a shard of its own
# (a claim touches the room's members and the shard's process records at once).
CLUSTER_SHARDS = 16


def _shards() -> range:
    return range(CLUSTER_SHARDS if clients.cluster() else clients.count())


def _shard_for(group: str) -> int:
    if clients.cluster():
        return shards.shard_of(group, CLUSTER_SHARDS)
    return clients.shard_for(group)


def _redis_shard(shard: int) -> int:
    """The REDIS_URL shard holding a presence shard; in a Redis Cluster, the cluster (it
    places the keys itself)."""
    return 0 if clients.cluster() else shard


def _client(shard: int):
    """The client of a presence shard: one Redis of REDIS_URL's, or the cluster's."""
    return clients.connect(_redis_shard(shard))


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

    def __init__(self, prefix: str, ttl: float) -> None:
        self._prefix = prefix
        self._ttl_ms = int(ttl * 1000)
        self._interval = ttl / 3
        self.process_id = uuid.uuid4().hex
        self._heartbeat: asyncio.Task | None = None
        self._claims: dict[str, Claim] = {}  # channel -> its member's claim
        self._epochs: dict[int, bytes] = {}  # shard -> its epoch when last beaten
        self._retries = Retries()  # releases that failed (rooms.state.retries)

    def _key(self, shard: int, kind: str, name: str = "") -> str:
        # In a Redis Cluster a presence shard is a hash tag: a claim's keys share its slot.
        tag = shards.tagged(f"presence.{shard}") + ":" if clients.cluster() else ""
        return f"{self._prefix}:{tag}{kind}:{name}" if name else f"{self._prefix}:{tag}{kind}"

    async def claim(
        self, room: str, group: str, nickname: str, channel: str, user_id: int | None = None
    ) -> None:
        """Make `nickname` this channel's in the room, atomically, or raise NICKNAME_TAKEN."""
        shard = _shard_for(group)
        await self._ensure_heartbeat(shard)
        since = now_ms()
        key = names.nickname_key(nickname)
        entry = orjson.dumps(
            {"n": nickname, "p": self.process_id, "c": channel, "r": room, "t": since, "u": user_id}
        )
        claimed = await batches.call(
            _redis_shard(shard),
            _CLAIM,
            [
                self._key(shard, "members", group),
                self._key(shard, "proc", self.process_id),
                self._key(shard, "active"),
            ],
            [key, entry, group, room],
        )
        if not claimed:
            raise errors.nickname_taken(nickname)
        self._claims[channel] = Claim(room, group, key, entry, since)

    async def release(self, room: str, group: str, nickname: str, channel: str) -> None:
        """Free the nickname, if this channel still holds it; if Redis fails, again later
        until it succeeds."""
        claim = self._claims.pop(channel, None)
        if claim is None:
            return
        step = partial(self._release, _shard_for(group), group, claim)
        try:
            await step()
        except clients.BACKEND_ERRORS as exc:
            logger.warning("presence: releasing %r failed (%r); retrying", claim.key, exc)
            self._retries.add(channel, step)
        except asyncio.CancelledError:  # cut off (Daphne's close timeout): still to be done
            self._retries.add(channel, step)
            raise

    async def _release(self, shard: int, group: str, claim: Claim) -> None:
        await _client(shard).eval(
            _RELEASE,
            2,
            self._key(shard, "members", group),
            self._key(shard, "active"),
            claim.key,
            claim.entry,
            group,
        )

    async def members(self, group: str) -> list[str]:
        """Nicknames in the room, sorted case-insensitively."""
        shard = _shard_for(group)
        entries = await _client(shard).hvals(self._key(shard, "members", group))
        return sorted_nicknames(orjson.loads(entry)["n"] for entry in entries)

    async def member(self, group: str, nickname: str) -> Member | None:
        """The member holding `nickname` (or a look-alike of it) in the room, if any."""
        shard = _shard_for(group)
        entry = await _client(shard).hget(
            self._key(shard, "members", group), names.nickname_key(nickname)
        )
        if entry is None:
            return None
        fields = orjson.loads(entry)
        return Member(fields["n"], fields["c"], fields.get("u"))

    async def occupied(self) -> dict[str, int]:
        """Room name -> member count, for every room with members (on every shard)."""
        found: dict[str, int] = {}
        for shard in _shards():
            client = _client(shard)
            active = await client.hgetall(self._key(shard, "active"))
            async with client.pipeline(transaction=False) as pipe:
                for group in active:
                    pipe.hlen(self._key(shard, "members", group.decode()))
                counts = await pipe.execute()
            for name, count in zip(active.values(), counts, strict=True):
                if count:
                    found[name.decode()] = count
        return found

    async def _ensure_heartbeat(self, shard: int) -> None:
        if shard not in self._epochs:
            await self._beat(shard)  # registered before the first claim, not a period later
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.ensure_future(self._beat_forever())

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.beat()

    async def beat(self) -> None:
        """Renew this process's deadline on every shard; restore its members where Redis
        forgot them; remove and announce the members of dead processes. A shard that fails
        is logged and tried again at the next beat; the others go on."""
        for shard in _shards():
            try:
                await self._beat(shard)
            except Exception:
                logger.exception("presence heartbeat failed on shard %d; retrying", shard)

    async def _beat(self, shard: int) -> None:
        beats = clients.connect(0) if clients.cluster() else clients.connect_heartbeat(shard)
        missing, epoch, dead = await beats.eval(
            _HEARTBEAT, 2, self._key(shard, "procs"), self._key(shard, "epoch"), self.process_id,
            self._ttl_ms, uuid.uuid4().hex,
        )  # fmt: skip
        if missing and shard in self._epochs:  # not its first beat: Redis forgot this process
            await self.restore(shard, lost=epoch != self._epochs[shard])
        self._epochs[shard] = epoch
        for process_id in dead:
            await self._reap(shard, process_id.decode(), own=False)

    async def restore(self, shard: int, lost: bool) -> None:
        """Claim this process's members' nicknames on `shard` again (module docstring): when
        Redis `lost` its memory the earlier claim of a name wins, otherwise the one in Redis."""
        claims = [
            (channel, claim)
            for channel, claim in self._claims.items()
            if _shard_for(claim.group) == shard
        ]
        if not claims:
            return
        logger.warning(
            "presence: %s on shard %d; restoring %d members",
            "Redis lost its keys" if lost else "this process was taken for dead",
            shard,
            len(claims),
        )
        keys = partial(self._key, shard)
        for channel in await recovery.restore(_client(shard), keys, self.process_id, claims, lost):
            self._claims.pop(channel, None)

    async def _reap(self, shard: int, process_id: str, own: bool) -> None:
        await recovery.reap(_client(shard), partial(self._key, shard), process_id, own)

    async def close(self) -> None:
        """Stop the heartbeat and the retries; remove this process's members, announcing
        their leave."""
        self._retries.cancel()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
            for shard in _shards():
                try:
                    await self._reap(shard, self.process_id, own=True)
                except clients.BACKEND_ERRORS:  # its members expire with this process's record
                    logger.warning("presence: shard %d unreachable at close", shard)
        self._claims.clear()
