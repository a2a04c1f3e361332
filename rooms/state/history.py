"""Reading history, for a joiner's replay and the HTTP API.

Reads merge the recent cache (rooms.state.sequence: every message the moment it is
published) with the database (everything written), so a message is readable from its
publish on, and one a moderator deleted is in neither (rooms.chat.moderation); every read is
bounded in messages and in bytes (REPLAY_MAX_BYTES).
"""

import logging
from typing import NamedTuple

from channels.db import database_sync_to_async
from django.conf import settings

from rooms.core import protocol
from rooms.core.protocol import Handshake
from rooms.models import Message, Room, to_ms
from rooms.state.backends import get_sequence

logger = logging.getLogger(__name__)

NEWEST = 2**62  # an id above any real one


class Page(NamedTuple):
    """Messages as (id, JSON frame), oldest first, and the room's retention floor."""

    messages: list[tuple[int, str]]
    pruned_through: int
    truncated: bool = False  # older messages in the range did not fit the byte budget


class Replay(NamedTuple):
    """What a joiner receives before live events."""

    messages: list[tuple[int, str]]
    gap: tuple[int, int] | None  # ids first..last that can no longer be replayed


STORED_PAGE = 100  # rows read from the database at a time, newest first


def _stored(room: str, after: int, upto: int, limit: int, budget: int) -> Page:
    found = Room.objects.filter(name=room).values_list("pk", "pruned_through").first()
    if found is None:
        return Page([], 0)
    messages: list[tuple[int, str]] = []
    rows = Message.objects.filter(room_id=found[0], seq__gt=after, deleted_at__isnull=True)
    rows = rows.order_by("-seq")
    while len(messages) < limit:
        page = rows.filter(seq__lte=upto).values_list("seq", "nickname", "text", "sent_at")
        page = list(page[: min(STORED_PAGE, limit - len(messages))])
        for seq, nickname, text, sent_at in page:
            frame = protocol.message(room, nickname, text, seq, to_ms(sent_at))[protocol.JSON]
            budget -= len(frame.encode())
            if budget < 0:
                return Page(messages[::-1], found[1], truncated=True)
            messages.append((seq, frame))
        if len(page) < STORED_PAGE:
            break
        upto = page[-1][0] - 1
    return Page(messages[::-1], found[1])


def _within(messages: list[tuple[int, str]], budget: int) -> tuple[list[tuple[int, str]], int]:
    """The newest of `messages` (oldest first) that fit in `budget` bytes, and what is left;
    a negative remainder means some did not fit."""
    kept = len(messages)
    while kept and budget >= 0:
        kept -= 1
        budget -= len(messages[kept][1].encode())
    if budget < 0:
        kept += 1
    return messages[kept:], budget


async def fetch(
    room: str, group: str, after: int, upto: int, limit: int, max_bytes: int | None = None
) -> Page:
    """The newest `limit` messages with after < id <= upto, oldest first, at most
    `max_bytes` of frames (REPLAY_MAX_BYTES by default): a replay or a page of the API
    never builds more than that in memory, whatever the messages' size."""
    budget = settings.ROOMS_REPLAY_MAX_BYTES if max_bytes is None else max_bytes
    cached, budget = _within(await get_sequence().recent(group, after, upto, limit), budget)
    if budget < 0:
        return Page(cached, 0, truncated=True)
    below = cached[0][0] if cached else upto + 1
    if len(cached) == limit or below - 1 <= after:
        return Page(cached, 0)
    older = await database_sync_to_async(_stored)(
        room, after, below - 1, limit - len(cached), budget
    )
    return Page(older.messages + cached, older.pruned_through, older.truncated)


def _count(handshake: Handshake) -> int:
    if handshake.history is not None:
        return handshake.history
    return settings.ROOMS_HISTORY_ON_JOIN if handshake.format == protocol.JSON else 0


async def replay(handshake: Handshake, group: str, last_id: int) -> Replay:
    """History for a joiner: everything after ?since= (at most HISTORY_MAX messages and
    REPLAY_MAX_BYTES, else a gap for the oldest), or the last ?history= messages (JSON
    default HISTORY_ON_JOIN, text 0) that fit in REPLAY_MAX_BYTES; `last_id` is the id its
    join was stamped with (rooms.state.sequence): later messages reach it live."""
    room, since, limit = handshake.room, handshake.since, settings.ROOMS_HISTORY_MAX
    if since is None:
        count = min(_count(handshake), limit)
        page = await fetch(room, group, 0, last_id, count) if count else Page([], 0)
        return Replay(page.messages, None)
    page = await fetch(room, group, since, last_id, limit + 1)
    messages = page.messages[-limit:] if limit else []
    first_kept = messages[0][0] if messages else last_id + 1
    if len(page.messages) > limit or page.truncated:
        return Replay(messages, (since + 1, first_kept - 1))
    if page.pruned_through > since:
        return Replay(messages, (since + 1, min(page.pruned_through, first_kept - 1)))
    return Replay(messages, None)
