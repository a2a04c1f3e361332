"""A WebSocket handshake the application accepted, handed from uvicorn's socket to picows.

picows is a server of its own (`ws_create_server`) and answers a handshake the moment its
router sees it; an ASGI application accepts or refuses later, after its own checks. So the
request is parsed by uvicorn, the application runs, and only on `websocket.accept` is a
picows protocol made for the socket and fed a handshake: the client's key alone (picows
keeps the request it parsed for the connection's life), then any bytes the client sent
behind its head. picows checks it, answers 101 and calls the listener's `on_ws_connected`.
"""

import binascii
import logging

from picows import WSListener, WSUpgradeResponse
from picows import WSUpgradeResponseWithListener as Accepted
from picows.picows import WSAutoPingStrategy, WSProtocol

# picows gives each connection a child of a logging.Logger it is handed; an adapter is
# shared as it is.
PICOWS_LOG = logging.LoggerAdapter(logging.getLogger("picows.server"), {})
PICOWS_HEAD = (
    b"GET / HTTP/1.1\r\nHost: rooms\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n"
)
READ_BUFFER = 2048  # picows' smallest


def valid_key(key: bytes | None) -> bool:
    """Whether `key` is a Sec-WebSocket-Key: 16 bytes in base64 (RFC 6455 section 4.1)."""
    try:
        return key is not None and len(binascii.a2b_base64(key, strict_mode=True)) == 16
    except binascii.Error:
        return False


def hand_over(
    transport,
    listener: WSListener,
    key: bytes,
    early: bytes,
    headers: dict[str, str],
    max_frame: int,
) -> None:
    """Make `transport` a picows WebSocket answering `key` with 101 and `headers`, whose
    frames (`early` first) go to `listener`; pings and deadlines stay the caller's."""
    response = WSUpgradeResponse.create_101_response(headers)
    protocol = WSProtocol(
        None,  # host and port, path: client side only
        None,
        False,  # server side
        lambda request: Accepted(response, listener),
        PICOWS_LOG,
        True,  # an exception in on_ws_frame closes the connection
        None,  # no handshake deadline of picows' own
        False,  # no pings of picows' own
        1,
        1,
        WSAutoPingStrategy.PING_WHEN_IDLE,
        True,  # answer the client's pings
        max_frame,
        None,
        READ_BUFFER,
    )
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    data = PICOWS_HEAD % key + early
    while data:
        buffer = protocol.get_buffer(-1)
        size = min(len(buffer), len(data))
        buffer[:size] = data[:size]
        data = data[size:]
        protocol.buffer_updated(size)
