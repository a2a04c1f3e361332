"""Closing clients that say nothing: IDLE_TIMEOUT.

A timer per connection cost 0.6 KB and a wake-up per timeout whatever the traffic. Here
every timer of an event loop sits in a wheel of RESOLUTION-second slots by its deadline,
behind one timer for the earliest slot: a touch only records the time, and a timer found
touched when its slot comes moves to the slot of its new deadline.
"""

import asyncio
import heapq
import math
import time
from collections.abc import Callable

RESOLUTION = 0.5  # seconds an idle client may outlive its deadline


class IdleTimer:
    """Calls `on_idle` (soon, on the loop) once `timeout` seconds pass without `touch()`."""

    __slots__ = ("timeout", "on_idle", "last", "slot", "wheel")

    def __init__(self, timeout: float, on_idle: Callable[[], None]) -> None:
        self.timeout = timeout
        self.on_idle = on_idle
        self.last = time.monotonic()
        self.slot: int | None = None
        loop = asyncio.get_running_loop()
        self.wheel = _wheels.get(loop) or _wheels.setdefault(loop, _Wheel(loop))
        self.wheel.add(self)

    def touch(self, now: float) -> None:
        """The client did something that counts (a valid message or command) at `now`."""
        self.last = now

    def cancel(self) -> None:
        if self.slot is not None:
            self.wheel.remove(self)


class _Wheel:
    """The idle timers of one event loop, by slot."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots: dict[int, dict[IdleTimer, None]] = {}
        self.due: list[int] = []  # a heap of the slots' numbers
        self.handle: asyncio.TimerHandle | None = None

    def add(self, timer: IdleTimer) -> None:
        slot = math.ceil((timer.last + timer.timeout) / RESOLUTION)
        timers = self.slots.get(slot)
        if timers is None:
            timers = self.slots[slot] = {}
            heapq.heappush(self.due, slot)
            if self.due[0] == slot:
                self._arm()
        timers[timer] = None
        timer.slot = slot

    def remove(self, timer: IdleTimer) -> None:
        timers = self.slots.get(timer.slot)
        if timers is not None:
            timers.pop(timer, None)
        timer.slot = None

    def _arm(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        delay = self.due[0] * RESOLUTION - time.monotonic()
        self.handle = self.loop.call_later(max(delay, 0.0), self._sweep)

    def _sweep(self) -> None:
        self.handle = None
        now = time.monotonic()
        while self.due and self.due[0] * RESOLUTION <= now:
            for timer in self.slots.pop(heapq.heappop(self.due)):
                timer.slot = None
                if timer.last + timer.timeout <= now:
                    self.loop.call_soon(timer.on_idle)
                else:
                    self.add(timer)
        if self.due:
            if self.handle is None:
                self._arm()
        else:
            del _wheels[self.loop]


_wheels: dict[asyncio.AbstractEventLoop, _Wheel] = {}
