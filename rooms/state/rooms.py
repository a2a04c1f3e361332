"""What a process keeps of each room while the room is in use here.

A room's state lives while it has local members (the sequence counts one in at its join,
one out at its leave) or calls in progress, and until its messages are written (rooms.state.
writer): memory follows the rooms in use, not every room ever visited.
"""

import asyncio
from collections import deque
from collections.abc import Callable


class RoomState:
    """What this process keeps of one room while it is in use."""

    __slots__ = ("room", "holders", "floor", "lock", "recent", "size", "forgotten")

    def __init__(self, room: str) -> None:
        self.room = room
        self.holders = 0  # local members, and calls in progress
        self.floor: int | None = None  # no id is issued at or below it; None until known
        self.lock = asyncio.Lock()
        self.recent: deque[tuple[int, str, int]] = deque()  # (id, JSON frame, its bytes)
        self.size = 0  # bytes in `recent`
        self.forgotten: set[int] = set()  # ids in `recent` a moderator deleted


class RoomStates:
    """Room states by group: created on first use, dropped once a room has no holder and
    nothing of it waits to be written (`pending(room)`, the history writer's highest id
    still pending, 0 when none)."""

    def __init__(self, pending: Callable[[str], int], sweep_interval: float) -> None:
        self._pending = pending
        self._sweep_interval = sweep_interval
        self._states: dict[str, RoomState] = {}
        self._retiring: set[str] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._states)

    def get(self, group: str) -> RoomState | None:
        """The room's state, if it is in use in this process."""
        return self._states.get(group)

    def hold(self, group: str, room: str) -> RoomState:
        """The room's state, created if needed, held until the matching `release`."""
        state = self._states.get(group)
        if state is None:
            state = self._states[group] = RoomState(room)
        state.holders += 1
        return state

    def release(self, group: str) -> None:
        """Give back one hold; the state goes once unheld and its messages are written."""
        state = self._states.get(group)
        if state is None:
            return
        state.holders -= 1
        if state.holders > 0:
            return
        if not self._pending(state.room):
            del self._states[group]
        elif group not in self._retiring:
            self._retiring.add(group)
            if self._sweeper is None:
                loop = asyncio.get_running_loop()
                self._sweeper = loop.call_later(self._sweep_interval, self.sweep)

    def sweep(self) -> None:
        """Drop the unheld states whose messages have been written since; check again later
        for the others (the database may be down)."""
        self._sweeper = None
        for group in list(self._retiring):
            state = self._states.get(group)
            if state is None or state.holders > 0:
                self._retiring.discard(group)
            elif not self._pending(state.room):
                self._retiring.discard(group)
                del self._states[group]
        if self._retiring:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._sweep_interval, self.sweep)

    def clear(self) -> None:
        """Forget every room (the process is stopping)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._states.clear()
        self._retiring.clear()
