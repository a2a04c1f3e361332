"""What Redis presence does about what went missing: members restored when Redis forgot
them, and the members of a dead process announced gone (rooms.state.redis_presence has the
rules; these run them on one shard, through `keys`, its key maker)."""

import logging
from collections.abc import Callable

import orjson
from channels.layers import get_channel_layer

from rooms.core import errors, protocol
from rooms.core.events import evict, now_ms
from rooms.core.groups import room_group
from rooms.state import lua
from rooms.state.sequence import announce

logger = logging.getLogger(__name__)

# rooms/state/lua/*.lua
_RESTORE = lua.script("restore")
_REAP = lua.script("reap")

Keys = Callable[..., str]  # (kind, name="") -> a presence key on the shard


async def restore(client, keys: Keys, process_id: str, claims: list, lost: bool) -> list[str]:
    """Claim again each (channel, Claim) of `claims`; close whoever loses a name with
    NICKNAME_TAKEN, announce the members who come back. Returns the channels whose claim
    was lost (their members are being closed)."""
    layer = get_channel_layer()
    async with client.pipeline(transaction=False) as pipe:
        for _, claim in claims:
            pipe.eval(
                _RESTORE,
                3,
                keys("members", claim.group),
                keys("proc", process_id),
                keys("active"),
                claim.key,
                claim.entry,
                claim.group,
                claim.room,
                claim.since,
                "1" if lost else "",
            )
        results = await pipe.execute()
    refused = []
    for (channel, claim), (restored, held) in zip(claims, results, strict=True):
        nickname = orjson.loads(claim.entry)["n"]
        if not restored:
            refused.append(channel)
            await layer.send(channel, evict(errors.nickname_taken(nickname)))
        elif held:
            await layer.send(orjson.loads(held)["c"], evict(errors.nickname_taken(nickname)))
        elif restored == 1 and not lost:
            frames = protocol.joined(claim.room, nickname, now_ms())
            await announce(layer, claim.group, frames)
    return refused


async def reap(client, keys: Keys, process_id: str, own: bool) -> None:
    """Announce the leave of every member of a dead process (or of this one, closing),
    then free their names: a member taking its name back on another process is never
    announced joining before its leave."""
    announced = set()
    for raw in await _members_of(client, keys, process_id):
        await _announce_leave(raw, process_id)
        announced.add(raw)
    gone = await client.eval(
        _REAP,
        3,
        keys("procs"),
        keys("proc", process_id),
        keys("active"),
        process_id,
        keys("members") + ":",
        "self" if own else "",
    )
    for raw in gone:
        if raw not in announced:  # claimed while the others were being announced
            await _announce_leave(raw, process_id)


async def _members_of(client, keys: Keys, process_id: str) -> list[bytes]:
    """The member entries a process holds on the shard, as the reap script will find them."""
    groups = await client.smembers(keys("proc", process_id))
    async with client.pipeline(transaction=False) as pipe:
        for group in groups:
            pipe.hvals(keys("members", group.decode()))
        found = await pipe.execute()
    return [raw for entries in found for raw in entries if orjson.loads(raw)["p"] == process_id]


async def _announce_leave(raw: bytes, process_id: str) -> None:
    entry = orjson.loads(raw)
    logger.info("%s left %s: its process %s stopped", entry["n"], entry["r"], process_id)
    frames = protocol.left(entry["r"], entry["n"], now_ms())
    await announce(get_channel_layer(), room_group(entry["r"]), frames)
