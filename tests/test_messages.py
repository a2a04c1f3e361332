"""Client messages out of WebSocket frames (rooms.server.messages): what the fast launcher
makes of each frame, and the close code of each fault. The same faults over real sockets,
on both launchers: tests/test_fuzz.py."""

import pytest
from picows import WSCloseCode, WSMsgType

from rooms.server.messages import Fault, take

TEXT, BINARY, MORE = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION
LIMIT = 10


def run(*frames: tuple) -> list:
    """Feed (kind, fin, payload) frames in order: the messages completed, or the Fault."""
    parts, out = None, []
    try:
        for kind, fin, payload in frames:
            parts, message = take(parts, kind, fin, False, payload, LIMIT)
            if message is not None:
                out.append(message)
    except Fault as fault:
        out.append((fault.code, fault.reason))
    return out


def text(value: str) -> dict:
    return {"type": "websocket.receive", "text": value}


def data(value: bytes) -> dict:
    return {"type": "websocket.receive", "bytes": value}


E = "é".encode()
PROTOCOL, TOO_BIG, UTF8 = (
    WSCloseCode.PROTOCOL_ERROR,
    WSCloseCode.MESSAGE_TOO_BIG,
    WSCloseCode.INVALID_TEXT,
)
CASES = [
    ("one text frame", [(TEXT, True, b"hi")], [text("hi")]),
    ("one binary frame", [(BINARY, True, b"\x00\xff")], [data(b"\x00\xff")]),
    ("fragments joined", [(TEXT, 0, b"he"), (MORE, 0, b"ll"), (MORE, 1, b"o")], [text("hello")]),
    ("a character split in two", [(TEXT, 0, E[:1]), (MORE, 1, E[1:])], [text("é")]),
    ("the limit exactly", [(TEXT, 0, b"12345"), (MORE, 1, b"67890")], [text("1234567890")]),
    ("a byte over it", [(TEXT, 0, b"12345"), (MORE, 1, b"678901")], [(TOO_BIG, "message too big")]),
    ("invalid UTF-8", [(TEXT, True, b"\xff")], [(UTF8, "invalid UTF-8")]),
    ("continuing nothing", [(MORE, 1, b"x")], [(PROTOCOL, "continuation of no message")]),
    (
        "a message inside a fragmented one",
        [(TEXT, 0, b"a"), (TEXT, 1, b"b")],
        [(PROTOCOL, "new message inside a fragmented one")],
    ),
    ("two messages in a row", [(TEXT, 1, b"a"), (BINARY, 1, b"b")], [text("a"), data(b"b")]),
]


@pytest.mark.parametrize(("name", "frames", "expected"), CASES, ids=[c[0] for c in CASES])
def test_frames_make_these_messages_or_this_close(name, frames, expected):
    assert run(*frames) == expected


def test_reserved_bits_are_a_protocol_error_without_an_extension():
    with pytest.raises(Fault) as fault:
        take(None, TEXT, True, True, b"hi", LIMIT)
    assert (fault.value.code, fault.value.reason) == (
        WSCloseCode.PROTOCOL_ERROR,
        "reserved bits set",
    )
