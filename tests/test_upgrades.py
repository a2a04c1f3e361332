"""Which first reads go straight to the WebSocket protocol (rooms.server.upgrades); the rest take
Daphne's HTTP path, which the live and fuzz tests exercise."""

import pytest
from twisted.web.http import _parseRequestLine

from rooms.server.upgrades import MAX_HEAD_BYTES, websocket_query

HEAD = (
    b"GET /ws/chat/Room1/?nickname=Nick HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8000\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)


def test_a_plain_handshake_goes_straight_on_with_its_query_string():
    assert websocket_query(HEAD) == b"nickname=Nick"
    assert websocket_query(HEAD.replace(b"?nickname=Nick", b"")) == b""
    any_case = HEAD.replace(b"Upgrade: websocket", b"upgrade:  WebSocket ")
    assert websocket_query(any_case) == b"nickname=Nick"


def test_frames_sent_right_after_the_head_go_on_with_it():
    assert websocket_query(HEAD + b"\x81\x85masked") == b"nickname=Nick"


@pytest.mark.parametrize(
    "data",
    [
        HEAD[:-2],  # the head is not complete yet
        HEAD.replace(b"GET", b"POST"),
        HEAD.replace(b"HTTP/1.1", b"HTTP/1.0"),
        HEAD.replace(b"GET /ws", b"GET http://127.0.0.1:8000/ws"),  # absolute form
        HEAD.replace(b"Room1", "Räume".encode()),  # not ASCII
        HEAD.replace(b"Room1", b"Room 1"),  # a space in the target
        HEAD.replace(b"Upgrade: websocket\r\n", b""),
        HEAD.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        HEAD.replace(b"Host:", b"Bad Name:"),
        HEAD.replace(b"Host:", b"Ho\x00st:"),
        HEAD.replace(b"127.0.0.1:8000", b"127.0.0.1\x0b"),  # a byte Daphne refuses
        HEAD.replace(b"Connection: Upgrade\r\n", b"Connection: Upgrade\n"),  # bare LF
        HEAD.replace(b"Connection: Upgrade\r\n", b" folded\r\n"),  # obsolete line folding
        HEAD.replace(b"\r\n\r\n", b"\r\n" + b"X-Pad: a\r\n" * 101 + b"\r\n"),
        HEAD.replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"),
    ],
    ids=[
        "incomplete",
        "post",
        "http-1.0",
        "absolute-target",
        "non-ascii-target",
        "space-in-target",
        "no-upgrade",
        "other-upgrade",
        "space-in-name",
        "nul",
        "refused-value-byte",
        "bare-lf",
        "folded",
        "too-many-headers",
        "too-long",
    ],
)
def test_anything_else_takes_the_http_path(data):
    assert websocket_query(data) is None


TARGET_BYTES = [
    (b"\x00", "nul"),
    (b"\x01", "control"),
    (b"\t", "tab"),
    (b"\x0b", "vertical-tab"),  # autobahn splits lines here
    (b"\x0c", "form-feed"),  # and here
    (b"\x1c", "file-separator"),  # 0x1C-0x1E too
    (b"\x1e", "record-separator"),
    (b"\x1f", "unit-separator"),
    (b" ", "space"),
    (b"\x7f", "del"),
    (b"\x80", "high"),
    (b"\x85", "next-line"),  # a line break to autobahn, which reads the head as Latin-1
    (b"\xb0", "high-twisted-lets-through"),
    (b"\xb1", "high-twisted-refuses"),
    (b"\xff", "highest"),
]


@pytest.mark.parametrize(("byte", "name"), TARGET_BYTES, ids=[name for _, name in TARGET_BYTES])
@pytest.mark.parametrize("where", [b"Room1", b"Nick"], ids=["path", "query"])
def test_a_target_byte_outside_printable_ascii_takes_the_http_path(byte, name, where):
    assert websocket_query(HEAD.replace(where, where + byte + b"x", 1)) is None


def test_every_printable_ascii_byte_in_the_target_goes_straight_on():
    printable = bytes(range(0x21, 0x7F)).replace(b"?", b"")
    head = HEAD.replace(b"/ws/chat/Room1/", b"/ws/chat/" + printable + b"/")
    assert websocket_query(head) == b"nickname=Nick"


def test_no_target_byte_twisted_refuses_goes_straight_on():
    # Twisted's own parser is the reference: a Twisted that changes its rule fails here.
    for byte in map(int.to_bytes, range(256)):
        line = b"GET /ws/chat/R" + byte + b"/ HTTP/1.1"
        try:
            _parseRequestLine(line)
        except ValueError:
            head = HEAD.replace(b"/ws/chat/Room1/", b"/ws/chat/R" + byte + b"/")
            assert websocket_query(head) is None, byte
