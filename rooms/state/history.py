"""Message history: batched persistence off the fan-out path, and reads for replay and the API.

A sender's process records each message it published (`record`, no I/O); one task per
process writes the pending ones to the database every FLUSH_INTERVAL_MS, or as soon as
FLUSH_BATCH are waiting, FLUSH_BATCH to a transaction. `close()` writes what is still
pending: the shutdown path must await it so that nothing accepted is lost on a clean stop.

A row the database refuses (PostgreSQL takes no NUL in text; an id already holding another
message) is set aside, logged and counted, and every other row is written; a failure of the
database itself leaves the batch pending, retried until it succeeds. The pending messages
are bounded (HISTORY_PENDING_MAX, HISTORY_PENDING_BYTES): at the bound the writer is `full`
and new messages are refused before they are published, never accepted and then dropped.

Reads merge the recent cache (rooms.state.sequence: every message the moment it is published)
with the database (everything flushed), so a message is readable from its publish on.
"""

import asyncio
import logging
import sys
import time
from collections import deque
from functools import cache
from itertools import islice
from typing import NamedTuple

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction

from rooms.core import metrics, protocol
from rooms.core.errors import ClientError
from rooms.core.protocol import Handshake
from rooms.models import Message, Room, from_ms, to_ms
from rooms.state.sequence import get_sequence

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


# Why a row is set aside (the `reason` label of rooms_history_set_aside_total).
INVALID = "invalid"  # refused for its data: NUL in text (PostgreSQL), unencodable, a constraint
DUPLICATE = "duplicate"  # its room already holds another message under its id

# A batch that raises one of these is written again row by row: the data of some row is at
# fault, and only that row is set aside. Anything else (OperationalError, InterfaceError:
# the database is down, locked or unreachable) leaves the whole batch pending, to retry.
ROW_ERRORS = (DataError, IntegrityError, ValueError, OverflowError)
BIGINT_MAX = 2**63 - 1


class SetAside(NamedTuple):
    """A message the database will never take: logged, counted, not retried."""

    pending: Pending
    reason: str
    detail: str


class Written(NamedTuple):
    """What became of a batch: messages now stored, and those set aside."""

    stored: int
    set_aside: list[SetAside]


def _values(pending: Pending) -> tuple:
    """The INSERT's values after the room, checked here so that no server-made field (id,
    time) fails inside the database; ValueError, TypeError or OverflowError if one is bad."""
    if not (type(pending.id) is int and 0 < pending.id <= BIGINT_MAX):
        raise ValueError(f"id {pending.id!r} is not a positive 64-bit integer")
    if not (isinstance(pending.nickname, str) and isinstance(pending.text, str)):
        raise TypeError("nickname and text must be strings")
    sent_at = connection.ops.adapt_datetimefield_value(from_ms(pending.ts))
    return (pending.id, pending.nickname, pending.text, sent_at)


def _checked(batch: list[Pending]) -> tuple[list[tuple[Pending, tuple]], list[SetAside]]:
    """Each message with its values, and those that no database could store."""
    rows, aside = [], []
    valid_rooms: dict[str, bool] = {}
    for pending in batch:
        try:
            values = _values(pending)
            if pending.room not in valid_rooms:
                valid_rooms[pending.room] = _valid_room(pending.room)
            if not valid_rooms[pending.room]:
                raise ValueError("the room name is not one the protocol accepts")
        except (TypeError, ValueError, OverflowError) as exc:
            aside.append(SetAside(pending, INVALID, str(exc)))
        else:
            rows.append((pending, values))
    return rows, aside


def _valid_room(room: object) -> bool:
    try:
        protocol.parse_room(room)
    except (ClientError, TypeError):
        return False
    return True


def _room_pks(newest: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Each room's primary key; rooms not stored yet are created."""
    rooms = dict(Room.objects.filter(name__in=newest).values_list("name", "pk"))
    missing = newest.keys() - rooms.keys()
    if missing:
        Room.objects.bulk_create(
            [Room(name=name, last_activity=from_ms(newest[name][1])) for name in missing],
            ignore_conflicts=True,
        )
        rooms = dict(Room.objects.filter(name__in=newest).values_list("name", "pk"))
    return rooms


def _insert(cursor, rows: list[tuple[Pending, tuple]], pks: dict[str, int]) -> tuple[list, list]:
    """Insert every row; return the rows not inserted because their id was taken, and
    those set aside. One statement for the batch; row by row, each under a savepoint,
    only when some row's data makes it fail."""
    params = [(pks[pending.room], *values) for pending, values in rows]
    try:
        with transaction.atomic():
            cursor.executemany(_INSERT, params)
            inserted = cursor.rowcount
        return (rows if inserted < len(rows) else []), []
    except ROW_ERRORS:
        pass
    taken, aside = [], []
    for row, values in zip(rows, params, strict=True):
        try:
            with transaction.atomic():
                cursor.execute(_INSERT, values)
                inserted = cursor.rowcount
        except ROW_ERRORS as exc:
            aside.append(SetAside(row[0], INVALID, f"{type(exc).__name__}: {exc}"))
        else:
            if not inserted:
                taken.append(row)
    return taken, aside


def _duplicates(taken: list[tuple[Pending, tuple]], pks: dict[str, int]) -> list[SetAside]:
    """The rows whose id holds another message. The same message (nickname, text, time)
    is this one, stored by an earlier attempt whose commit was acknowledged late."""
    by_room: dict[str, list[Pending]] = {}
    for pending, _ in taken:
        by_room.setdefault(pending.room, []).append(pending)
    duplicates = []
    for room, messages in by_room.items():
        rows = Message.objects.filter(room_id=pks[room], seq__in=[p.id for p in messages])
        stored = {
            seq: (nickname, text, to_ms(sent_at))
            for seq, nickname, text, sent_at in rows.values_list(
                "seq", "nickname", "text", "sent_at"
            )
        }
        for pending in messages:
            if stored.get(pending.id) != (pending.nickname, pending.text, pending.ts):
                detail = f"room {room!r} already holds another message with id {pending.id}"
                duplicates.append(SetAside(pending, DUPLICATE, detail))
    return duplicates


def write(batch: list[Pending]) -> Written:
    """Insert a batch of messages and advance their rooms, in one transaction. Rows the
    database refuses are set aside and every other one is written; a failure of the
    database itself raises, and nothing is written."""
    rows, aside = _checked(batch)
    newest: dict[str, tuple[int, int]] = {}  # room -> (highest id, latest ts) in the batch
    for pending, _ in rows:
        last_id, last_ts = newest.get(pending.room, (0, 0))
        newest[pending.room] = (max(last_id, pending.id), max(last_ts, pending.ts))
    if not rows:
        return Written(0, aside)
    with transaction.atomic():
        pks = _room_pks(newest)
        # Prepared statements run once per row: the ORM's per-object model and SQL
        # compilation (bulk_create, one update() per room) cost about ten times more CPU,
        # taken from the process doing the fan-out.
        adapt = connection.ops.adapt_datetimefield_value
        with connection.cursor() as cursor:
            taken, refused = _insert(cursor, rows, pks)
            duplicates = _duplicates(taken, pks) if taken else []
            # Ids of rows set aside were issued and seen by clients: last_id, the floor
            # ids resume from (rooms.state.sequence), covers them too.
            cursor.executemany(
                _advance_sql(),
                [
                    (last_id, adapt(from_ms(last_ts)), pks[room])
                    for room, (last_id, last_ts) in newest.items()
                ],
            )
    aside += refused + duplicates
    return Written(len(rows) - len(refused) - len(duplicates), aside)


class Backlog:
    """Messages accepted and not written yet, oldest first, and each room's highest id
    among them, exact in O(1) as the oldest go (a monotonic queue of ids per room)."""

    def __init__(self) -> None:
        self._messages: deque[Pending] = deque()
        # room -> ids of its pending messages that no later one of the room exceeds,
        # in arrival order, hence decreasing: the first is the room's highest.
        self._highest: dict[str, deque[int]] = {}
        self.text_bytes = 0  # memory taken by the pending texts

    def __len__(self) -> int:
        return len(self._messages)

    def append(self, pending: Pending) -> None:
        """Add the newest message."""
        self._messages.append(pending)
        self.text_bytes += sys.getsizeof(pending.text)
        ids = self._highest.get(pending.room)
        if ids is None:
            ids = self._highest[pending.room] = deque()
        while ids and ids[-1] < pending.id:
            ids.pop()
        ids.append(pending.id)

    def oldest(self, count: int) -> list[Pending]:
        """The `count` oldest messages, left in place."""
        return list(islice(self._messages, count))

    def remove_oldest(self, count: int) -> None:
        """Forget the `count` oldest messages: written or set aside."""
        for _ in range(count):
            pending = self._messages.popleft()
            self.text_bytes -= sys.getsizeof(pending.text)
            ids = self._highest[pending.room]
            if ids[0] == pending.id:  # an id equal to a later one's is kept for it
                ids.popleft()
                if not ids:
                    del self._highest[pending.room]

    def highest(self, room: str) -> int:
        """The highest id of the room's pending messages; 0 when none."""
        ids = self._highest.get(room)
        return ids[0] if ids else 0


RETRY_LOG_INTERVAL = 10.0  # seconds between log lines while the database stays unavailable


class HistoryWriter:
    """Collects published messages and writes them in batches from one background task.

    At most `max_pending` messages, or `max_bytes` of their text, wait (0: no bound): past
    that `full` is true and the consumer refuses new messages, so a database outage costs
    bounded memory and loses nothing that was accepted.
    """

    def __init__(
        self, interval: float, batch: int, max_pending: int = 0, max_bytes: int = 0
    ) -> None:
        self._interval = interval
        self._batch = batch
        self._max_pending = max_pending
        self._max_bytes = max_bytes
        self._backlog = Backlog()
        self._task: asyncio.Task | None = None
        self._due = asyncio.Event()
        self._lock = asyncio.Lock()
        self._refusing = False  # `full` was seen true, and not seen false since

    def record(self, pending: Pending) -> None:
        """Queue a message for writing; never waits, never refuses (see `full`)."""
        self._backlog.append(pending)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        if len(self._backlog) >= self._batch:
            self._due.set()
        if not self._refusing and self.full:
            self._refusing = True
            self._due.set()  # write now rather than at the next interval
            logger.warning(
                "history: %d messages (%d bytes of text) wait to be written, the most kept;"
                " new messages are refused until the database takes them",
                len(self._backlog),
                self._backlog.text_bytes,
            )

    @property
    def pending(self) -> int:
        """Messages accepted but not written yet."""
        return len(self._backlog)

    @property
    def pending_bytes(self) -> int:
        """Memory taken by the text of the messages not written yet."""
        return self._backlog.text_bytes

    @property
    def full(self) -> bool:
        """The backlog is at its bound: accept no more messages until it shrinks."""
        return bool(
            (self._max_pending and len(self._backlog) >= self._max_pending)
            or (self._max_bytes and self._backlog.text_bytes >= self._max_bytes)
        )

    def highest_pending(self, room: str) -> int:
        """The highest id of the room's messages still waiting to be written (0: none)."""
        return self._backlog.highest(room)

    async def _run(self) -> None:
        failing_since = logged = 0.0
        while True:
            try:
                await asyncio.wait_for(self._due.wait(), self._interval)
            except TimeoutError:
                pass
            self._due.clear()
            try:
                await self.flush()
            except Exception:
                now = time.monotonic()
                if not failing_since:
                    failing_since = logged = now
                    logger.exception(
                        "history: writing failed, %d messages pending; retrying", self.pending
                    )
                elif now - logged >= RETRY_LOG_INTERVAL:
                    logged = now
                    logger.error(
                        "history: writing still fails after %.0f s, %d messages pending",
                        now - failing_since,
                        self.pending,
                        exc_info=True,
                    )
                # Retried at the flush interval, not at every new message.
                await asyncio.sleep(self._interval)
            else:
                if failing_since:
                    logger.info(
                        "history: writing again after %.1f s", time.monotonic() - failing_since
                    )
                    failing_since = 0.0

    async def flush(self) -> None:
        """Write every message pending when called, FLUSH_BATCH to a transaction. Rows the
        database refuses are set aside; if the database fails, the rest stay pending."""
        async with self._lock:
            remaining = len(self._backlog)
            while remaining:
                batch = self._backlog.oldest(min(remaining, self._batch))
                written = await database_sync_to_async(write)(batch)
                self._backlog.remove_oldest(len(batch))
                remaining -= len(batch)
                metrics.history_written(written.stored)
                for aside in written.set_aside:
                    _log_set_aside(aside)
                    metrics.history_set_aside(aside.reason)
            if self._refusing and not self.full:
                self._refusing = False
                logger.info("history: backlog below its bound, messages accepted again")

    async def close(self) -> None:
        """Stop the background task and write what is pending (call on shutdown)."""
        if self._task is not None:
            # A write in progress finishes first: cancelling it would not stop its thread.
            async with self._lock:
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()


def _log_set_aside(aside: SetAside) -> None:
    pending = aside.pending
    logger.error(
        "history: message set aside, not retried: reason=%s room=%r id=%s nickname=%r"
        " length=%d: %s",
        aside.reason,
        pending.room,
        pending.id,
        pending.nickname,
        len(pending.text) if isinstance(pending.text, str) else -1,
        aside.detail,
        extra={
            "event": "set_aside",
            "reason": aside.reason,
            "room": pending.room,
            "message_id": pending.id,
            "nickname": pending.nickname,
        },
    )


@cache
def get_writer() -> HistoryWriter:
    """This process's writer."""
    return HistoryWriter(
        settings.ROOMS_FLUSH_INTERVAL,
        settings.ROOMS_FLUSH_BATCH,
        settings.ROOMS_HISTORY_PENDING_MAX,
        settings.ROOMS_HISTORY_PENDING_BYTES,
    )


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
