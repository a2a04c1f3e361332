"""Server-to-client WebSocket frames built once per message, not once per recipient.

A room message reaches every member as the same `str` object (the channel layer shares one
event among all local members). Daphne hands each recipient's copy to autobahn, which
encodes, checks, frames and logs it again for every socket: a large share of the CPU of a
delivery. `SharedFrameProtocol` writes the bytes rooms.server.wire built once for all.

Frames are sent at once when nothing is queued before them (`write_through`), as asyncio's
own transports do; Twisted's `transport.write` waits for the next loop turn and registers
the socket for writing and unregisters it again: two more system calls per write, which
in rooms of a few members, where most deliveries are a write of their own, cost much
of the throughput (BENCHMARKS.md, S3).

Consumers may also skip the ASGI send for room events: `write_soon(text)`, offered in the
scope as the extension rooms.chat.extensions.WRITE_SOON, queues the text and returns; every
text queued in one event-loop turn goes out to its client in one write, at the end of the
turn. A room delivery is then a function call, with no await and no task switch.
"""

from collections.abc import Sequence

from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import tcp

from rooms.server import wire
from rooms.server.wire import shared_text_frame


def write_through(transport, data: bytes) -> None:
    """`transport.write(data)`, sending at once what the socket takes when nothing waits."""
    if (
        isinstance(transport, tcp.Connection)
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport.dataBuffer
        and not transport._tempDataBuffer
    ):
        sent = transport.writeSomeData(data)
        if isinstance(sent, int) and sent > 0:  # an exception: write() reports the loss
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)


class SharedFrameProtocol(WebSocketProtocol):
    """Daphne's WebSocket protocol, writing shared frames for plain text sends."""

    corked: list[str] | None = None  # texts from write_soon, not yet written

    def write_soon(self, text: str) -> None:
        """Send `text` at the end of this event-loop turn, with the others queued in it."""
        wire.write_soon(self, text)

    def uncork(self) -> None:
        """Write the texts queued by write_soon, in one write if nothing waits before them."""
        texts, self.corked = self.corked, None
        if not texts or self.state != self.STATE_OPEN:
            return
        if self._fast(texts):
            self.trafficStats.outgoingWebSocketMessages += len(texts)
            write_through(self.transport, b"".join([shared_text_frame(text) for text in texts]))
        else:
            for text in texts:
                super().serverSend(text, False)

    def handle_reply(self, message: dict) -> None:
        self.uncork()  # texts queued before this message go first
        super().handle_reply(message)

    def serverSend(self, content: str | bytes, binary: bool = False) -> None:
        if binary or not self._fast((content,)):
            super().serverSend(content, binary)
            return
        self.trafficStats.outgoingWebSocketMessages += 1
        write_through(self.transport, shared_text_frame(content))

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        # autobahn's, through write_through: the handshake response, pings and close frames.
        if sync or chopsize or self.send_queue or self.logOctets:
            super().sendData(data, sync, chopsize)
            return
        write_through(self.transport, data)
        if self.state == self.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif self.state in (self.STATE_CONNECTING, self.STATE_PROXY_CONNECTING):
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)

    def _fast(self, texts: Sequence[str]) -> bool:
        """Whether plain frames may be written now, as autobahn itself would."""
        limit = self.maxMessagePayloadSize
        return (
            self.state == self.STATE_OPEN
            and not self.send_queue  # earlier frames still queued: keep their order
            and self._perMessageCompress is None
            and not (limit and any(len(text) > limit // 4 for text in texts))
        )
