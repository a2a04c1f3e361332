"""The database's last message id of rooms, read for many rooms at once.

A room's first message on a process whose Redis has no counter for it (a new room: its
join sets none while the database has nothing) needs the room's last id from the database
(rooms.state.sequence). Django runs database calls from async code in one thread per
process, one call at a time, each waiting its turn for the interpreter against the busy
event loop: when 100,000 members sent one message in each of 10,000 new rooms, every
process had ~1,400 such reads in line, and a fifth of the messages took longer than the
crowd check's 15 s (BENCHMARKS.md, "Crowd"). Here the rooms asked for while a read is under
way wait for the next one, and each read asks for all of them in one query.
"""

import asyncio
import weakref

from channels.db import database_sync_to_async

from rooms.models import Room

CHUNK = 500  # rooms per query, well under SQLite's limit on parameters


class _Reader:
    """Rooms waiting for their last id on one event loop, and the task reading them."""

    def __init__(self) -> None:
        self.waiting: dict[str, list[asyncio.Future]] = {}
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, {}
            try:
                found = await database_sync_to_async(_stored)(list(batch))
            except Exception as exc:
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            for room, futures in batch.items():
                for future in futures:
                    if not future.done():
                        future.set_result(found.get(room) or 0)


_readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Reader] = (
    weakref.WeakKeyDictionary()
)


async def stored_last_id(room: str) -> int:
    """The highest id the database holds for the room (0 for a room it never saw), read
    together with those other rooms asked for meanwhile."""
    loop = asyncio.get_running_loop()
    reader = _readers.get(loop)
    if reader is None:
        reader = _readers[loop] = _Reader()
    future = loop.create_future()
    reader.waiting.setdefault(room, []).append(future)
    if reader.task is None or reader.task.done():
        reader.task = loop.create_task(reader.run())
    return await future


def _stored(rooms: list[str]) -> dict[str, int | None]:
    found: dict[str, int | None] = {}
    for start in range(0, len(rooms), CHUNK):
        chunk = rooms[start : start + CHUNK]
        found.update(Room.objects.filter(name__in=chunk).values_list("name", "last_id"))
    return found
