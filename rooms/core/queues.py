"""Queues with one reader, lighter than asyncio.Queue: the per-connection queues."""

import asyncio
from collections.abc import Callable

# A client's messages waiting for its application before the server stops reading that
# client, until the application has taken them: a client pipelining thousands of frames in
# one write would otherwise have them all queued before the application runs once, each
# message a hundred times its bytes in memory.
INPUT_HIGH = 64


class SingleReaderQueue:
    """put_nowait() from anyone, get() from one task at a time: what Daphne needs of an
    application's input queue, and channels-redis of a channel's. An asyncio.Queue holds
    four deques, a notable part of an idle connection (BENCHMARKS.md, "Memory per
    connection")."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[dict] = []  # rarely more than one: a list pops its head cheaply
        self._waiter: asyncio.Future | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: dict) -> None:
        """Queue `item` and wake the waiting get()."""
        self._items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> dict:
        """The oldest item, once there is one; a cancelled get() takes nothing."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        item = self._items.pop(0)
        self._taken()
        return item

    def _taken(self) -> None:
        """Called once get() has taken an item."""


class InputQueue(SingleReaderQueue):
    """A client's messages for its application: `pause()` (the client's reading) once
    INPUT_HIGH of them wait, `resume()` once the application has taken them all. Its get()
    is the application's `receive` itself, with no coroutine around it waiting for the
    whole life of an idle connection; both launchers use it."""

    __slots__ = ("_pause", "_resume", "_paused")

    def __init__(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        super().__init__()
        self._pause = pause
        self._resume = resume
        self._paused = False

    def put_nowait(self, item: dict) -> None:
        super().put_nowait(item)
        if len(self._items) >= INPUT_HIGH and not self._paused:
            self._paused = True
            self._pause()

    def _taken(self) -> None:
        if self._paused and not self._items:
            self._paused = False
            self._resume()
