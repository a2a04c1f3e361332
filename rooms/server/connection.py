"""The WebSocket protocol rooms.server.serve runs: each open connection keeps only what it uses.

A server holding tens of thousands of idle members pays for every attribute of every
connection. autobahn copies its ~30 options from the factory onto each connection unless
the protocol class already has them (`WebSocketProtocol._connectionMade`); `for_factory`
gives them to the class once. Once the handshake is done, the parsed request (headers,
raw bytes, query parameters, the 101 response) is never read again: `onOpen` lets it go,
keeping the path, the one field Daphne still reads (it logs it on close). The scope's
header list (Daphne's `clean_headers`, shared by every copy of the scope) is emptied then
too: what reads it (the origin check, the session cookie, a project's CAN_JOIN) runs before
the handshake is answered. autobahn's send queue, an empty deque on almost every
connection (frames go straight to the socket: rooms.server.frames), becomes one only once
something waits in it.

It also notes when its client last sent anything (`heard`) and when it was last pinged
(`pinged`), for rooms.server.keepalive, and takes the pong to keepalive's ping without
handing it to autobahn's frame parser.
"""

import time
from collections import deque

from twisted.internet import defer

from rooms.server.frames import SharedFrameProtocol

# Set by autobahn's processHandshake and succeedHandshake, read by nothing afterwards.
# The client's pong to keepalive's empty ping: final pong, masked, no payload, 4 mask bytes.
PONG_LENGTH, PONG_HEAD = 6, (0x8A, 0x80)

HANDSHAKE_ONLY = (
    "http_request_data",
    "http_status_line",
    "http_headers",
    "http_request_uri",
    "http_request_params",
    "http_response_data",
    "websocket_extensions",
    "websocket_protocols",
    "_wskey",
)


class OpenedRequest:
    """What Daphne reads of the handshake request once the connection is open."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class SendQueue:
    """autobahn's `send_queue` as it uses it (len, append, popleft), holding a deque only
    while something waits: an empty deque is 0.6 KB a connection."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: deque | None = None

    def __len__(self) -> int:
        return 0 if self.items is None else len(self.items)

    def append(self, item) -> None:
        if self.items is None:
            self.items = deque()
        self.items.append(item)

    def popleft(self):
        item = self.items.popleft()
        if not self.items:
            self.items = None
        return item


class RoomsProtocol(SharedFrameProtocol):
    """Daphne's WebSocket protocol with shared frames and a small per-connection state."""

    heard = 0.0  # time.monotonic() of the last bytes from the client
    pinged = 0.0  # time.monotonic() of the last keepalive ping

    @classmethod
    def for_factory(cls, factory) -> type["RoomsProtocol"]:
        """A subclass carrying `factory`'s current options, so connections need no copy."""
        # A function as a class attribute would become a method: keep it a plain value.
        options = {
            name: staticmethod(value) if callable(value := getattr(factory, name)) else value
            for name in cls.CONFIG_ATTRS
        }
        return type(cls.__name__, (cls,), options)

    def connectionMade(self) -> None:
        super().connectionMade()
        self.send_queue = SendQueue()

    def dataReceived(self, data: bytes) -> None:
        self.heard = time.monotonic()
        if (
            len(data) == PONG_LENGTH
            and (data[0], data[1]) == PONG_HEAD
            and self.state == self.STATE_OPEN
            and self.current_frame is None  # not the middle of another frame
            and not self.data
        ):
            return  # the whole of a keepalive pong: `heard` was all it had to say
        super().dataReceived(data)

    def onOpen(self) -> None:
        super().onOpen()
        self.request = OpenedRequest(self.request.path)
        self.application_deferred = None  # fired: Daphne reads it only in onConnect
        self.clean_headers.clear()  # in place: the application's scope holds this very list
        for name in HANDSHAKE_ONLY:
            setattr(self, name, None)

    def connectionLost(self, reason) -> None:
        super().connectionLost(reason)
        # autobahn resolves is_closed with the protocol itself: a reference cycle that
        # only the collector frees, keeping the connection's memory until it runs.
        self.is_closed = defer.succeed(None)
