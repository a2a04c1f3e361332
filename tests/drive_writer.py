"""Run the history writer (rooms.state.writer) in a process of its own against the database
at DATABASE_URL (in-process tests only have pytest-django's SQLite), as a server runs it.

stdin: JSON, a list of batches, each a list of [room, id, ts, nickname, text]. Each batch
is recorded, then written by `close()`, as on shutdown. stdout: JSON, one report a batch
(each room's highest pending id before and after writing, the writer's counters). The
writer's log goes to stderr.
"""

import asyncio
import sys

import django
import orjson


async def run(batches: list[list[list]]) -> list[dict]:
    from rooms.core.metrics import metrics
    from rooms.state.storage import Pending
    from rooms.state.writer import HistoryWriter

    reports = []
    for batch in batches:
        writer = HistoryWriter(interval=60, batch=500)
        messages = [Pending(*row) for row in batch]
        for pending in messages:
            writer.record(pending)
        rooms = sorted({pending.room for pending in messages})
        highest = {room: writer.highest_pending(room) for room in rooms}
        await writer.close()
        reports.append(
            {
                "highest_pending": highest,
                "highest_pending_after": {room: writer.highest_pending(room) for room in rooms},
                "pending": writer.pending,
                "written": metrics.history_written,
                "set_aside": dict(metrics.history_set_aside),
            }
        )
    return reports


if __name__ == "__main__":
    django.setup()
    batches = orjson.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(orjson.dumps(asyncio.run(run(batches))))
