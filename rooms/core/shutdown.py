"""What must happen before a server process stops, registered by the app that needs it
(rooms.apps: the history writer writes what is pending) and run by the server that stops
(rooms.server.serve), so that neither imports the other."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]

_hooks: list[tuple[str, Hook]] = []


def on_shutdown(name: str, hook: Hook) -> None:
    """Have `hook` awaited when the server stops, after its clients are closed."""
    _hooks.append((name, hook))


async def run(timeout: float) -> None:
    """Await every hook, in the order registered, within `timeout` seconds in all; a hook
    that fails or runs out of time is logged, and the others still run."""
    deadline = asyncio.get_running_loop().time() + timeout
    for name, hook in _hooks:
        remaining = max(deadline - asyncio.get_running_loop().time(), 0.1)
        try:
            await asyncio.wait_for(hook(), remaining)
        except Exception:
            logger.exception("shutdown: %s failed", name)
