"""The consumer's event loop: one task reads the client and one the channel layer.

Channels' `await_many_dispatch` starts a new task and an `asyncio.wait` for every message,
most of the cost of a delivery once the layer is cheap. Here two long-lived pump tasks
feed one bounded inbox, and the consumer dispatches from it serially, as Channels does: a
burst of messages is handled without a task switch per message, and `idle` runs each time
the burst is over (the consumer writes what it gathered, see ChatConsumer.flush). The
bound keeps back-pressure on the channel layer, whose capacity still applies.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence

INBOX_SIZE = 64

Source = Callable[[], Awaitable[dict]]


async def _pump(source: Source, inbox: asyncio.Queue) -> None:
    try:
        while True:
            await inbox.put(await source())
    except Exception as exc:  # handed to the dispatching task, which raises it
        await inbox.put(exc)


async def dispatch_serially(
    sources: Sequence[Source],
    dispatch: Callable[[dict], Awaitable[None]],
    idle: Callable[[], Awaitable[None]],
) -> None:
    """Dispatch messages from every source one at a time, until a source or handler raises;
    await `idle()` whenever no message is waiting."""
    inbox: asyncio.Queue = asyncio.Queue(INBOX_SIZE)
    pumps = [asyncio.ensure_future(_pump(source, inbox)) for source in sources]
    try:
        while True:
            if inbox.empty():
                await idle()
            message = await inbox.get()
            if isinstance(message, Exception):
                raise message
            await dispatch(message)
    finally:
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
