"""Undo steps in Redis that failed, tried again with backoff until Redis takes them.

A member's leave frees its nickname in Redis. When that command fails (Redis unreachable for
a moment, its connections all busy in a burst), nothing else would ever free the name while
this process lives: its holder is gone, but the room keeps listing it and refuses the
name to everyone (BENCHMARKS.md, "Crowd": 8,497 rooms still held names 300 s after a mass
disconnect). `Retries` keeps such steps and runs them again, one task for all of them,
waiting RETRY_FIRST seconds and doubling to RETRY_MAX while Redis keeps failing, until each
has succeeded or the process closes (its members are then removed with its record).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from rooms.state.clients import BACKEND_ERRORS

logger = logging.getLogger(__name__)

RETRY_FIRST = 0.2  # seconds before the first retry
RETRY_MAX = 5.0  # longest wait between two passes

Step = Callable[[], Awaitable[None]]


class Retries:
    """Steps that failed, each under a key of its own, retried until they succeed."""

    def __init__(self) -> None:
        self.pending: dict[str, Step] = {}
        self._task: asyncio.Task | None = None

    def add(self, key: str, step: Step) -> None:
        """Run `step` again later, and again, until it succeeds."""
        self.pending[key] = step
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._retry())

    async def _retry(self) -> None:
        delay = RETRY_FIRST
        while self.pending:
            await asyncio.sleep(delay)
            for key, step in list(self.pending.items()):
                try:
                    await step()
                except BACKEND_ERRORS as exc:
                    logger.info("%d Redis steps still failing: %r", len(self.pending), exc)
                    delay = min(delay * 2, RETRY_MAX)
                    break  # Redis still refuses: the rest can wait for the next pass
                if self.pending.get(key) is step:
                    del self.pending[key]
            else:
                delay = RETRY_FIRST
        logger.info("every failed Redis step has now succeeded")

    def cancel(self) -> None:
        """Stop retrying (the process is closing)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.pending.clear()
