"""Subscriptions and unsubscriptions asked for while one is under way, sent together.

One SUBSCRIBE (or SSUBSCRIBE) per joining connection cost a command and a turn of the
layer's lock each: a burst of joins waited in line for the lock, and thousands of clients
leaving at once held up every publish behind their UNSUBSCRIBEs (BENCHMARKS.md,
"Connecting on Redis pub/sub", "Joins on the cluster"). The shard layer
(rooms.layers.resubscribing) and the cluster layer (rooms.layers.cluster_pubsub) gather
names here and send each gathering in one turn of their lock.

A join also waits, outside the lock, for Redis to confirm its name's subscription
(`Confirmations`): PubSub.subscribe only writes the command, and a publish sent right after
on another connection, such as the joiner's own join event, could reach Redis first and
never arrive here.
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager

# Seconds a join waits for Redis to confirm its subscription before it fails, as a failed
# SUBSCRIBE does; well under the consumer's JOIN_TIMEOUT (rooms.chat.consumers).
CONFIRM_TIMEOUT = 5.0


class Confirmations:
    """Names subscribed that Redis has not confirmed yet: the receive loop confirms each as
    its answer comes, or fails them when the connection is lost."""

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future] = {}

    @contextmanager
    def expecting(self, names: list[str]) -> Iterator[None]:
        """Around the command that subscribes `names`: expected before it is written (the
        answer may come at once), failed with its error."""
        loop = asyncio.get_running_loop()
        for name in names:
            if name not in self._pending:
                self._pending[name] = loop.create_future()
        try:
            yield
        except Exception as exc:
            self.fail(exc, names)
            raise

    def confirm(self, name: str | bytes) -> None:
        future = self._pending.pop(name.decode() if isinstance(name, bytes) else name, None)
        if future is not None and not future.done():
            future.set_result(None)

    def fail(self, error: Exception, names: Iterable[str] | None = None) -> None:
        """End the wait for `names` (every one if None) with `error`."""
        for name in list(self._pending if names is None else names):
            future = self._pending.pop(name, None)
            if future is not None and not future.done():
                future.set_result(error)

    async def wait(self, name: str) -> None:
        """Return once `name` is confirmed (at once if it is not pending), or raise."""
        future = self._pending.get(name)
        if future is None:
            return
        try:
            # Shielded: every member joining the group waits for the same answer.
            error = await asyncio.wait_for(asyncio.shield(future), CONFIRM_TIMEOUT)
        except TimeoutError:
            raise TimeoutError(f"Redis did not confirm subscribing {name} in time") from None
        if error is not None:
            raise error


class Joining:
    """Names to subscribe: each caller waits for the command that carried its name, and
    raises its error, then for Redis to confirm the name (`confirmations`)."""

    def __init__(
        self,
        lock: asyncio.Lock,
        send: Callable[[list[str]], Awaitable[None]],
        confirmations: Confirmations,
    ) -> None:
        self._lock = lock
        self._send = send  # called under the lock with the names gathered
        self._confirmations = confirmations  # filled in by `send`
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
        # Outside the lock: publishes and other joins go on meanwhile.
        await self._confirmations.wait(name)

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
