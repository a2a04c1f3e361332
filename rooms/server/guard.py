"""A bound on each WebSocket client's unsent bytes (SEND_BUFFER_LIMIT).

Daphne hands every outgoing frame to the Twisted transport, whose buffer has no bound: a
client that stops reading would make the server keep every message for it. A push producer
on the transport, with the transport's `bufferSize` set to the limit, is paused by Twisted
as soon as more than that waits unsent in the process; the client is then closed with 4509
SLOW_CONSUMER.
"""

import logging
from collections.abc import Callable

from autobahn.websocket.protocol import WebSocketProtocol as AutobahnProtocol
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import abstract, reactor
from twisted.internet.interfaces import IPushProducer
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from rooms.core import errors, logs, metrics

logger = logging.getLogger(__name__)


@implementer(IPushProducer)
class SendBufferGuard:
    """The transport's producer: Twisted pauses it once more than `bufferSize` bytes wait
    unsent, which here means the client has stopped keeping up and is closed."""

    def __init__(self, protocol: WebSocketProtocol, on_full: Callable[[], None]) -> None:
        self.protocol = protocol
        self.on_full = on_full

    def pauseProducing(self) -> None:
        # Called from inside transport.write(): close on the next reactor turn instead.
        reactor.callLater(0, self.on_full)

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def guard(protocol: WebSocketProtocol, limit: int) -> None:
    """Close `protocol`'s client once more than `limit` bytes wait unsent for it."""
    transport = protocol.transport
    # With TLS (an ssl: endpoint) the unsent bytes wait, encrypted, in the socket under
    # the TLS layer: the guard goes on that socket.
    socket = transport.transport if isinstance(transport, TLSMemoryBIOProtocol) else transport
    if isinstance(socket, abstract.FileDescriptor):  # TCP or UNIX
        # The HTTP channel that handed the socket over is its producer until now.
        transport.unregisterProducer()
        socket.bufferSize = limit
        socket.registerProducer(
            SendBufferGuard(protocol, lambda: close_slow(protocol, limit)), True
        )


def close_slow(protocol: WebSocketProtocol, limit: int) -> None:
    """Close a client over its send buffer limit; dropped 1 s later if it reads nothing."""
    if protocol.state != AutobahnProtocol.STATE_OPEN:
        return
    metrics.error(errors.SLOW_CONSUMER)
    client = logs.address(protocol.client_addr)
    logger.warning(
        "slow consumer %s: over %d unsent bytes, closing",
        client,
        limit,
        extra={"event": "slow_consumer", "client": client},
    )
    # The close frame queues behind the unsent data; autobahn aborts the TCP connection
    # if no close reply arrives within its close handshake timeout (1 s).
    protocol.sendClose(code=errors.WS_4509_SLOW_CONSUMER, reason=errors.SLOW_CONSUMER)
