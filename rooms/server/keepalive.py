"""Keeping idle WebSockets alive at a cost that does not grow with how often it is checked.

Daphne's `timeout_checker` calls every connection's `check_timeouts` every 2 s, which sends
autobahn's auto-ping (a random payload, a frame built by autobahn, a timer per ping) to each
one silent for PING_INTERVAL; at 83,000 idle connections that walk, the pings and reading
their pongs took most of the server's CPU (BENCHMARKS.md, "Crowd"). Here:

- each open WebSocket is looked at once per sweep, `SWEEP_SLICES` slices of it a second
  apart, so no turn of the loop walks every connection;
- only a connection that has sent nothing for PING_INTERVAL is pinged: any bytes from it
  (a message, a ping, a pong) prove it alive;
- the ping is one prebuilt two-byte frame written to the socket; the pong to it is six
  bytes, recognised before autobahn parses anything (RoomsProtocol.dataReceived);
- a connection whose ping has gone unanswered for PING_TIMEOUT is dropped at the next look,
  with no timer per ping.

Connections still in their handshake, and HTTP requests, keep Daphne's `check_timeouts`,
every second: there are few of them at a time.
"""

import math
import time
from collections.abc import Iterable

from autobahn.websocket.protocol import WebSocketProtocol as AutobahnProtocol
from daphne.ws_protocol import WebSocketProtocol

from rooms.server.frames import write_through

PING_FRAME = b"\x89\x00"  # final ping, no payload, unmasked (a server's frames never are)
TICK = 1.0  # seconds between two slices of a sweep


def sweep_slices(ping_interval: float, ping_timeout: float) -> int:
    """How many ticks one sweep over every open connection is spread across: a quarter of
    the shorter of the two intervals (0 is none, as for autobahn's timeout), so a ping or a
    drop comes at most that late."""
    shortest = min((t for t in (ping_interval, ping_timeout) if t > 0), default=TICK)
    return max(1, math.floor(shortest / 4 / TICK))


class Keepalive:
    """The open WebSockets of one server, pinged when silent and dropped when dead."""

    def __init__(self, ping_interval: float, ping_timeout: float, lifetime: float) -> None:
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.lifetime = lifetime  # Daphne's websocket_timeout: negative for none
        self.slices = sweep_slices(ping_interval, ping_timeout)
        self.pending: dict[object, None] = {}  # handshakes and HTTP requests, in order
        self.open: dict[WebSocketProtocol, None] = {}
        self.sweep: list[WebSocketProtocol] = []  # this sweep's connections, left to look at
        self.per_tick = 0

    def connected(self, protocol: object) -> None:
        """A new connection: checked by Daphne's rules until it is an open WebSocket."""
        self.pending[protocol] = None

    def disconnected(self, protocol: object) -> None:
        self.pending.pop(protocol, None)
        self.open.pop(protocol, None)

    def tick(self) -> None:
        """One second's work: the pending connections, and the next slice of the sweep."""
        for protocol in list(self.pending):
            if (
                isinstance(protocol, WebSocketProtocol)
                and protocol.state != protocol.STATE_CONNECTING
            ):
                del self.pending[protocol]
                if protocol.state == AutobahnProtocol.STATE_OPEN:
                    self.open[protocol] = None
            else:
                protocol.check_timeouts()
        if not self.sweep:
            self.sweep = list(self.open)
            self.sweep.reverse()  # popped from the end: oldest first
            self.per_tick = math.ceil(len(self.sweep) / self.slices)
        batch = self.sweep[-self.per_tick :] if self.per_tick else []
        del self.sweep[len(self.sweep) - len(batch) :]
        self.look_at(batch, time.monotonic())

    def look_at(self, protocols: Iterable[WebSocketProtocol], now: float) -> None:
        """Ping the silent, drop those that did not answer, close those past their lifetime."""
        interval, timeout, lifetime = self.ping_interval, self.ping_timeout, self.lifetime
        for protocol in protocols:
            if protocol.state != AutobahnProtocol.STATE_OPEN:
                continue
            if protocol.pinged > protocol.heard:
                if 0 < timeout < now - protocol.pinged:
                    protocol.wasClean = False
                    protocol.wasNotCleanReason = "WebSocket ping timeout"
                    protocol.dropConnection(abort=True)
                    continue
            elif now - protocol.heard >= interval:
                ping(protocol, now)
            if lifetime >= 0 and protocol.duration() > lifetime:
                protocol.serverClose()


def ping(protocol: WebSocketProtocol, now: float) -> None:
    """Send the prebuilt ping, after anything autobahn still queues for this client."""
    protocol.pinged = now
    if protocol.send_queue:
        protocol.sendPing()
    else:
        write_through(protocol.transport, PING_FRAME)
