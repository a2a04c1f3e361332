"""Message history: batched persistence off the fan-out path, and reads for replay and the API.

A sender's process records each message it published (`record`, no I/O); one task per
process writes the pending ones to the database every FLUSH_INTERVAL_MS, or as soon as
FLUSH_BATCH are waiting, in one transaction. `close()` writes what is still pending: the
shutdown path must await it so that nothing accepted is lost on a clean stop.

Reads merge the recent cache (rooms.sequence: every message the moment it is published)
with the database (everything flushed), so a message is readable from its publish on.
"""

import asyncio
import logging
from functools import cache
from typing import NamedTuple

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection, transaction

from rooms import protocol
from rooms.models import Message, Room, from_ms, to_ms
from rooms.protocol import Handshake
from rooms.sequence import get_sequence

logger = logging.getLogger(__name__)

NEWEST = 2**62  # an id above any real one


class Pending(NamedTuple):
    """A published message waiting to be written."""

    room: str
    id: int
    ts: int
    nickname: str
    text: str


class Page(NamedTuple):
    """Messages as (id, JSON frame), oldest first, and the room's retention floor."""

    messages: list[tuple[int, str]]
    pruned_through: int
    truncated: bool = False  # older messages in the range did not fit the byte budget


class Replay(NamedTuple):
    """What a joiner receives before live events."""

    messages: list[tuple[int, str]]
    gap: tuple[int, int] | None  # ids first..last that can no longer be replayed


def _insert_sql() -> str:
    table = Message._meta.db_table
    columns = [Message._meta.get_field(name).column for name in ("room", "seq", "nickname")]
    columns += [Message._meta.get_field(name).column for name in ("text", "sent_at")]
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES (%s, %s, %s, %s, %s)"
        f" ON CONFLICT ({columns[0]}, {columns[1]}) DO NOTHING"
    )


_INSERT = _insert_sql()


@cache  # the vendor is known once the first batch is written, not at import
def _advance_sql() -> str:
    quote = connection.ops.quote_name
    greatest = "MAX" if connection.vendor == "sqlite" else "GREATEST"
    last_id, last_activity = (
        quote(Room._meta.get_field(name).column) for name in ("last_id", "last_activity")
    )
    table, pk = quote(Room._meta.db_table), quote(Room._meta.pk.column)
    return (
        f"UPDATE {table} SET {last_id} = {greatest}({last_id}, %s),"
        f" {last_activity} = {greatest}({last_activity}, %s) WHERE {pk} = %s"
    )


def write(batch: list[Pending]) -> None:
    """Insert a batch of messages and advance their rooms, in one transaction."""
    newest: dict[str, tuple[int, int]] = {}  # room -> (highest id, latest ts) in the batch
    for pending in batch:
        last_id, last_ts = newest.get(pending.room, (0, 0))
        newest[pending.room] = (max(last_id, pending.id), max(last_ts, pending.ts))
    with transaction.atomic():
        rooms = dict(Room.objects.filter(name__in=newest).values_list("name", "pk"))
        missing = newest.keys() - rooms.keys()
        if missing:
            first = from_ms(min(pending.ts for pending in batch))
            Room.objects.bulk_create(
                [Room(name=name, last_activity=first) for name in missing], ignore_conflicts=True
            )
            rooms = dict(Room.objects.filter(name__in=newest).values_list("name", "pk"))
        # Prepared statements run once per row: the ORM's per-object model and SQL
        # compilation (bulk_create, one update() per room) cost about ten times more CPU,
        # taken from the process doing the fan-out.
        adapt = connection.ops.adapt_datetimefield_value
        with connection.cursor() as cursor:
            cursor.executemany(
                _INSERT,
                [(rooms[p.room], p.id, p.nickname, p.text, adapt(from_ms(p.ts))) for p in batch],
            )
            cursor.executemany(
                _advance_sql(),
                [
                    (last_id, adapt(from_ms(last_ts)), rooms[room])
                    for room, (last_id, last_ts) in newest.items()
                ],
            )


class HistoryWriter:
    """Collects published messages and writes them in batches from one background task."""

    def __init__(self, interval: float, batch: int) -> None:
        self._interval = interval
        self._batch = batch
        self._pending: list[Pending] = []
        self._writing: list[Pending] = []
        self._task: asyncio.Task | None = None
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()

    def record(self, pending: Pending) -> None:
        """Queue a message for writing; never waits."""
        self._pending.append(pending)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        if len(self._pending) >= self._batch:
            self._full.set()

    @property
    def pending(self) -> int:
        """Messages accepted but not written yet."""
        return len(self._pending)

    def highest_pending(self, room: str) -> int:
        """The highest id of the room's messages not written yet; 0 when none."""
        return max((p.id for p in (*self._writing, *self._pending) if p.room == room), default=0)

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._full.wait(), self._interval)
            except TimeoutError:
                pass
            self._full.clear()
            try:
                await self.flush()
            except Exception:
                logger.exception("writing %d messages failed; retrying", len(self._pending))

    async def flush(self) -> None:
        """Write every pending message now; on failure they stay pending."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            self._writing = batch
            try:
                await database_sync_to_async(write)(batch)
            except BaseException:
                self._pending[:0] = batch
                raise
            finally:
                self._writing = []

    async def close(self) -> None:
        """Stop the background task and write what is pending (call on shutdown)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.flush()


@cache
def get_writer() -> HistoryWriter:
    """This process's writer."""
    return HistoryWriter(settings.ROOMS_FLUSH_INTERVAL, settings.ROOMS_FLUSH_BATCH)


STORED_PAGE = 100  # rows read from the database at a time, newest first


def _stored(room: str, after: int, upto: int, limit: int, budget: int) -> Page:
    found = Room.objects.filter(name=room).values_list("pk", "pruned_through").first()
    if found is None:
        return Page([], 0)
    messages: list[tuple[int, str]] = []
    rows = Message.objects.filter(room_id=found[0], seq__gt=after).order_by("-seq")
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
    join was stamped with (rooms.sequence): later messages reach it live."""
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
