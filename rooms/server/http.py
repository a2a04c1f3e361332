"""uvicorn's HTTP protocol, bounded, handing WebSocket upgrades to rooms.server.websocket.

uvicorn waits for a request head without limit of time, and httptools reads headers
without limit of size or number: a client trickling bytes (slowloris) or sending endless
headers would hold a connection and its memory for good. Each head must arrive whole
within HANDSHAKE_TIMEOUT (the sweep of rooms.server.deadlines drops it otherwise), in at
most MAX_HEAD_BYTES (431) and MAX_HEADERS headers (400), as under Daphne.

uvicorn hands an upgrade over by writing the head out again for its WebSocket protocol to
parse, and drops any bytes behind the head; `upgrade` gives the WebSocket what this parse
found and those bytes.
"""

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from rooms.server import deadlines
from rooms.server.websocket import WebSocket

MAX_HEAD_BYTES = 16_384  # as Twisted's bound on a request head (totalHeadersSize)
MAX_HEADERS = 100
INVALID = "Invalid HTTP request received."
TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)


class HttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol, watched by the deadlines sweep while a head is incoming."""

    state = deadlines.CONNECTING  # what the sweep reads; never changes
    seen = False
    since = 0.0
    pinged = 0.0
    head_bytes: int | None = 0  # bytes of the head so far; None between heads

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        deadlines.track(self)

    def data_received(self, data: bytes) -> None:
        if self.head_bytes is not None:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                deadlines.forget(self)
                self.transport.write(TOO_LARGE)
                self.transport.close()
                return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.logger.warning(INVALID)
            self.send_400_response(INVALID)
        except httptools.HttpParserUpgrade as upgrade:
            if self._should_upgrade():
                self.upgrade(data[upgrade.args[0] :] if upgrade.args else b"")
            else:
                self._unsupported_upgrade_warning()

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= MAX_HEADERS:
            raise ValueError("too many headers")  # httptools: HttpParserCallbackError
        super().on_header(name, value)

    def upgrade(self, early: bytes) -> None:
        """Hand the connection, its parsed head and the bytes behind it to a WebSocket."""
        self.connections.discard(self)
        websocket = WebSocket(self.config, self.server_state, self.app_state)
        self.transport.set_protocol(websocket)
        websocket.connection_made(self.transport)
        websocket.start(self, early)
        self.parser = None  # it refers back to this protocol: let both go now

    def on_message_begin(self) -> None:
        if self.head_bytes is None:
            self.head_bytes = 0
            deadlines.track(self)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.head_bytes = None
        deadlines.forget(self)
        super().on_headers_complete()

    def connection_lost(self, exc) -> None:
        deadlines.forget(self)
        super().connection_lost(exc)

    def abort(self) -> None:
        """The sweep's answer to a head past its deadline."""
        self.transport.abort()

    def ping(self) -> None:
        pass

    def cancel(self) -> None:
        pass
