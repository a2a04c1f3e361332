"""The WebSocket protocol rooms.server.serve runs: each open connection keeps only what it uses.

A server holding tens of thousands of idle members pays for every attribute of every
connection. autobahn copies its ~30 options from the factory onto each connection unless
the protocol class already has them (`WebSocketProtocol._connectionMade`); `for_factory`
gives them to the class once. Once the handshake is done, the parsed request (headers,
raw bytes, query parameters, the 101 response) is never read again: `onOpen` lets it go,
keeping the path, the one field Daphne still reads (it logs it on close).
"""

from twisted.internet import defer

from rooms.server.frames import SharedFrameProtocol

# Set by autobahn's processHandshake and succeedHandshake, read by nothing afterwards.
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


class RoomsProtocol(SharedFrameProtocol):
    """Daphne's WebSocket protocol with shared frames and a small per-connection state."""

    @classmethod
    def for_factory(cls, factory) -> type["RoomsProtocol"]:
        """A subclass carrying `factory`'s current options, so connections need no copy."""
        # A function as a class attribute would become a method: keep it a plain value.
        options = {
            name: staticmethod(value) if callable(value := getattr(factory, name)) else value
            for name in cls.CONFIG_ATTRS
        }
        return type(cls.__name__, (cls,), options)

    def onOpen(self) -> None:
        super().onOpen()
        self.request = OpenedRequest(self.request.path)
        self.application_deferred = None  # fired: Daphne reads it only in onConnect
        for name in HANDSHAKE_ONLY:
            setattr(self, name, None)

    def connectionLost(self, reason) -> None:
        super().connectionLost(reason)
        # autobahn resolves is_closed with the protocol itself: a reference cycle that
        # only the collector frees, keeping the connection's memory until it runs.
        self.is_closed = defer.succeed(None)
