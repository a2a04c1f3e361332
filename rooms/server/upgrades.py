"""WebSocket handshakes handed to autobahn without a first HTTP parse.

Under Daphne each handshake is parsed twice: Twisted's HTTP channel builds a Request,
Daphne's WebRequest checks it, builds the WebSocket protocol, writes the head out again
and feeds it to autobahn, which parses it once more and answers. The first parse is an
expensive part of a connection's CPU (BENCHMARKS.md). `UpgradeChannel` looks at the first bytes
of a connection: a complete, plain WebSocket handshake goes to the WebSocket protocol as
Daphne would hand it over; anything else, a head split over several reads included,
takes Twisted's and Daphne's HTTP path exactly as before.
"""

from daphne.utils import HEADER_NAME_RE, INVALID_HEADER_VALUE_BYTES
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol

MAX_HEAD_BYTES = 16_384  # Twisted's own bound on a request head (totalHeadersSize)
MAX_HEADERS = 100
# Twisted refuses a request-target holding a byte at or below 0x20 (controls, space) or
# above 0xB0 (twisted.web.http._parseRequestLine, whose bound of 176 lets DEL and 0x80-0xB0
# through: it means "~", 0o176). autobahn, which would parse the head here instead, splits
# lines at some of those (0x0B, 0x0C, 0x1C-0x1E). Only printable ASCII goes straight on;
# any other target takes Twisted's path and gets its answer, and Daphne's.
TARGET_BYTES = bytes(range(0x21, 0x7F))


def websocket_query(data: bytes) -> bytes | None:
    """The query string of `data` if it starts with one complete, plain WebSocket
    handshake head: `GET /... HTTP/1.1`, a printable ASCII target, header names and values
    as Daphne accepts them, `Upgrade: websocket`. None for anything else."""
    end = data.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES)
    if end < 0:
        return None
    head = data[:end]
    crlf = head.count(b"\r\n")
    if head.count(b"\r") != crlf or head.count(b"\n") != crlf or b"\x00" in head:
        return None  # bare CR or LF, NUL: for the strict parser
    request_line, *headers = head.split(b"\r\n")
    method, _, rest = request_line.partition(b" ")
    target, _, version = rest.partition(b" ")
    if method != b"GET" or version != b"HTTP/1.1" or not target.startswith(b"/"):
        return None
    if target.translate(None, TARGET_BYTES) or len(headers) > MAX_HEADERS:
        return None
    upgrade = None
    for line in headers:
        name, colon, value = line.partition(b":")
        if not colon or not HEADER_NAME_RE.fullmatch(name):
            return None
        if INVALID_HEADER_VALUE_BYTES.intersection(value):
            return None
        if upgrade is None and name.lower() == b"upgrade":
            upgrade = value.strip().lower()
    return target.partition(b"?")[2] if upgrade == b"websocket" else None


class UpgradeChannel(HTTPChannel):
    """Twisted's HTTP channel, passing a plain WebSocket handshake straight on."""

    first_read = True

    def dataReceived(self, data: bytes) -> None:
        if self.first_read:
            self.first_read = False
            query = websocket_query(data)
            if query is not None:
                self.hand_over(data, query)
                return
        super().dataReceived(data)

    def hand_over(self, data: bytes, query: bytes) -> None:
        """Daphne's WebRequest hand-over, with the bytes as they came."""
        self.setTimeout(None)  # autobahn's handshake timeout takes over
        protocol = self.factory.server.ws_factory.buildProtocol(self.transport.getPeer())
        protocol._raw_query_string = query
        transport, self.transport = self.transport, None
        if isinstance(transport, ProtocolWrapper):  # TLS
            transport.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        protocol.makeConnection(transport)
        protocol.dataReceived(data)


def channel() -> _GenericHTTPChannelProtocol:
    """What Twisted's HTTPFactory.protocol builds, with an UpgradeChannel inside."""
    return _GenericHTTPChannelProtocol(UpgradeChannel())
