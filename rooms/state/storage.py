"""Writing messages to the database: one batch in one transaction, synchronous (the writer
runs it in a worker thread, rooms.state.writer).

A row the database refuses (PostgreSQL takes no NUL in text; an id already holding another
message) is set aside, and every other row is written; a failure of the database itself
raises, leaving the batch to be retried whole. Statements are prepared once and run with
executemany: the ORM's per-object model and SQL compilation cost about ten times more CPU,
taken from the process doing the fan-out.
"""

import logging
from functools import cache
from typing import NamedTuple

from django.db import DataError, IntegrityError, connection, transaction

from rooms.core import names
from rooms.core.errors import ClientError
from rooms.models import Message, Room, from_ms, to_ms

logger = logging.getLogger(__name__)


class Pending(NamedTuple):
    """A published message waiting to be written."""

    room: str
    id: int
    ts: int
    nickname: str
    text: str


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
        names.parse_room(room)
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
