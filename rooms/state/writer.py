"""The history writer: batched persistence off the fan-out path.

A sender's process records each message it published (`record`, no I/O); one task per
process writes the pending ones to the database (rooms.state.storage) every
FLUSH_INTERVAL_MS, or as soon as FLUSH_BATCH are waiting, FLUSH_BATCH to a transaction.
`close()` writes what is still pending: the shutdown path awaits it so that nothing accepted
is lost on a clean stop. A failure of the database leaves the batch pending, retried until
it succeeds. The pending messages are bounded (HISTORY_PENDING_MAX, HISTORY_PENDING_BYTES):
at the bound the writer is `full` and new messages are refused before they are published,
never accepted and then dropped.
"""

import asyncio
import logging
import sys
import time
from collections import deque
from itertools import islice

from channels.db import database_sync_to_async

from rooms.core import metrics
from rooms.state.storage import Pending, SetAside, write

logger = logging.getLogger(__name__)


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
        self._closing = False
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
        while not self._closing:
            try:
                await asyncio.wait_for(self._due.wait(), self._interval)
            except TimeoutError:
                pass
            self._due.clear()
            if self._closing:
                return
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
            # The task is told to stop, not cancelled: a write in progress finishes first
            # (cancelling would not stop its thread), and a cancellation landing as the task
            # wakes up can be lost in asyncio.wait_for, leaving it running.
            self._closing = True
            self._due.set()
            await self._task
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
