"""Closing clients that say nothing: IDLE_TIMEOUT."""

import asyncio
import time
from collections.abc import Callable


class IdleTimer:
    """Calls `on_idle` once `timeout` seconds pass without `touch()`.

    A timer to the deadline, re-armed from the last touch when it fires, costs nothing per
    frame received, and less memory than a sleeping task per connection.
    """

    __slots__ = ("timeout", "on_idle", "last", "handle")

    def __init__(self, timeout: float, on_idle: Callable[[], None]) -> None:
        self.timeout = timeout
        self.on_idle = on_idle
        self.last = time.monotonic()
        self.handle: asyncio.TimerHandle | None = None
        self._arm()

    def touch(self, now: float) -> None:
        """The client did something that counts (a valid message or command) at `now`."""
        self.last = now

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _arm(self) -> None:
        remaining = self.last + self.timeout - time.monotonic()
        if remaining > 0:
            self.handle = asyncio.get_running_loop().call_later(remaining, self._arm)
        else:
            self.handle = None
            self.on_idle()
