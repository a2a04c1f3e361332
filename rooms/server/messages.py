"""Client messages out of WebSocket frames (RFC 6455 section 5.4): fragments joined, size
bounded, text decoded, and for each fault the close code the RFC gives it.

Pure: the fast launcher (rooms.server.websocket) keeps the fragments so far of one
connection in a list and passes it in with each data frame.
"""

from picows import WSCloseCode, WSMsgType


class Fault(Exception):
    """The client broke the protocol: close with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code, self.reason = code, reason


def take(
    parts: list | None, kind: int, fin: bool, rsv: bool, payload: bytes, limit: int
) -> tuple[list | None, dict | None]:
    """The fragments still open after this frame, and the ASGI message it completes, if it
    does. `parts` is [kind, size, payload, ...] of a message begun and not finished."""
    if rsv:  # no extension was negotiated
        raise Fault(WSCloseCode.PROTOCOL_ERROR, "reserved bits set")
    if kind == WSMsgType.CONTINUATION:
        if parts is None:
            raise Fault(WSCloseCode.PROTOCOL_ERROR, "continuation of no message")
        parts[1] += len(payload)
        if parts[1] > limit:
            raise Fault(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
        parts.append(payload)
        if not fin:
            return parts, None
        kind, payload = parts[0], b"".join(parts[2:])
    elif parts is not None:
        raise Fault(WSCloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
    elif not fin:
        return [kind, len(payload), payload], None
    if kind == WSMsgType.BINARY:
        return None, {"type": "websocket.receive", "bytes": payload}
    try:
        return None, {"type": "websocket.receive", "text": payload.decode()}
    except UnicodeDecodeError:
        raise Fault(WSCloseCode.INVALID_TEXT, "invalid UTF-8")
