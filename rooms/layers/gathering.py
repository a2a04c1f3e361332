"""Subscriptions and unsubscriptions asked for while one is under way, sent together.

One SUBSCRIBE (or SSUBSCRIBE) per joining connection cost a command and a turn of the
layer's lock each: a burst of joins waited in line for the lock, and thousands of clients
leaving at once held up every publish behind their UNSUBSCRIBEs (BENCHMARKS.md,
"Connecting on Redis pub/sub", "Joins on the cluster"). The shard layer
(rooms.layers.resubscribing) and the cluster layer (rooms.layers.cluster_pubsub) gather
names here and send each gathering in one turn of their lock.
"""

import asyncio
from collections.abc import Awaitable, Callable


class Joining:
    """Names to subscribe: each caller waits for the command that carried its name, and
    raises its error."""

    def __init__(self, lock: asyncio.Lock, send: Callable[[list[str]], Awaitable[None]]) -> None:
        self._lock = lock
        self._send = send  # called under the lock with the names gathered
        self._waiting: dict[str, asyncio.Future] = {}
        self._task: asyncio.Task | None = None

    async def join(self, name: str) -> None:
        future = self._waiting.get(name)
        if future is None:
            future = self._waiting[name] = asyncio.get_running_loop().create_future()
            if self._task is None or self._task.done():
                self._task = asyncio.ensure_future(self._run())
        # Shielded: another caller may wait for the same name (a group).
        error = await asyncio.shield(future)
        if error is not None:
            raise error

    async def _run(self) -> None:
        while self._waiting:
            async with self._lock:
                waiting, self._waiting = self._waiting, {}
                error = None
                try:
                    await self._send(list(waiting))
                except BaseException as exc:  # each caller raises it, as with its own command
                    error = exc
                    if not isinstance(exc, Exception):  # cancelled: the layer is closing
                        raise
                finally:
                    for future in waiting.values():
                        if not future.done():
                            future.set_result(error)


class Leaving:
    """Names to unsubscribe, sent without anyone waiting (but `flush`)."""

    def __init__(self, lock: asyncio.Lock, send: Callable[[set[str]], Awaitable[None]]) -> None:
        self._lock = lock
        self._send = send  # called under the lock with the names gathered; never raises
        self._names: set[str] = set()
        self._task: asyncio.Task | None = None

    def leave(self, name: str) -> None:
        self._names.add(name)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def stay(self, name: str) -> None:
        """Keep `name` subscribed after all: it was joined again before it was sent."""
        self._names.discard(name)

    async def flush(self) -> None:
        """Wait until every name gathered so far is sent."""
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while self._names:
            async with self._lock:
                names, self._names = self._names, set()
                await self._send(names)
