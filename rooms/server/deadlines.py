"""Deadlines for every connection of rooms.server.fast, in one sweep.

A timer or a task per connection costs memory and wake-ups whatever the traffic. One sweep
every tick() looks at each connection: a request head or a handshake not answered within
HANDSHAKE_TIMEOUT is dropped; an open WebSocket that sent nothing for PING_INTERVAL gets a
ping, and is dropped if it still sent nothing PING_TIMEOUT later (any frame, a pong too,
counts as a sign of life: a connection only sets a flag for it); an application instance
still running CLOSE_TIMEOUT after its client left is cancelled.
"""

import asyncio
import time
from typing import Protocol

CONNECTING, OPEN, CLOSED = 0, 1, 3  # the states a sweep acts on (rooms.server.websocket)

_connections: dict = {}  # insertion-ordered set


class Tracked(Protocol):
    state: int
    seen: bool
    since: float
    pinged: float

    def ping(self) -> None: ...
    def abort(self) -> None: ...
    def cancel(self) -> None: ...


class Settings:
    ping_interval = 20.0
    ping_timeout = 30.0
    handshake_timeout = 5.0
    close_timeout = 60.0


def track(connection: Tracked) -> None:
    """Watch `connection` from now (its handshake deadline starts)."""
    connection.since = time.monotonic()
    _connections[connection] = None


def forget(connection: Tracked) -> None:
    _connections.pop(connection, None)


def tick() -> float:
    """Seconds between sweeps: a quarter of the shortest deadline, at least 0.25."""
    return max(
        0.25, min(Settings.ping_interval, Settings.ping_timeout, Settings.handshake_timeout) / 4
    )


def start(
    ping_interval: float, ping_timeout: float, handshake_timeout: float, close_timeout: float
) -> None:
    """Sweep every tick() from now on, on the running loop."""
    Settings.ping_interval = ping_interval
    Settings.ping_timeout = ping_timeout
    Settings.handshake_timeout = handshake_timeout
    Settings.close_timeout = close_timeout
    asyncio.get_running_loop().call_later(tick(), _sweep)


def _sweep() -> None:
    try:
        sweep(time.monotonic())
    finally:
        asyncio.get_running_loop().call_later(tick(), _sweep)


def sweep(now: float) -> None:
    """Ping the silent; drop the unanswering and the handshakes past their deadline; cancel
    the applications that outlived their clients."""
    interval, timeout = Settings.ping_interval, Settings.ping_timeout
    handshake, close = Settings.handshake_timeout, Settings.close_timeout
    for connection in list(_connections):
        state = connection.state
        if state == OPEN:
            if connection.seen:
                connection.seen = False
                connection.since = now
                connection.pinged = 0.0
            elif connection.pinged:
                if now - connection.pinged >= timeout:
                    connection.abort()
            elif now - connection.since >= interval:
                connection.pinged = now
                connection.ping()
        elif state == CONNECTING:
            if now - connection.since >= handshake:
                connection.abort()
        elif state == CLOSED and now - connection.since >= close:
            connection.cancel()
