"""Hostile bytes against one live server per launcher (tests.servers.LAUNCHERS) over raw sockets.

Each case sends something malformed and checks what that connection gets back; after each,
two sentinel members of another room must still chat, and the server still answer HTTP.
"""

import asyncio
import base64
import os
import shutil
import socket
import struct
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
from websockets.asyncio.client import connect

from tests.clients import chat_path, join, read_head, recv
from tests.servers import LAUNCHERS, Server

HANDSHAKE_TIMEOUT = 2


@pytest.fixture(scope="module", params=LAUNCHERS)
def fuzz_server(request, migrated_sqlite, tmp_path_factory) -> Iterator[Server]:
    """One server per launcher for the whole module: every case must leave it healthy for
    the next."""
    tmp = tmp_path_factory.mktemp("fuzz")
    database = shutil.copy(migrated_sqlite, tmp / "db.sqlite3")
    server = Server(
        request.param,
        {
            "DATABASE_URL": f"sqlite:///{database}",
            "HANDSHAKE_TIMEOUT": str(HANDSHAKE_TIMEOUT),
            "RATE_LIMIT": "0",
            "JOIN_RATE": "0",  # every case joins from 127.0.0.1
            "LOG_LEVEL": "WARNING",
        },
        tmp,
    )
    server.start()
    yield server
    assert server.stop() == 0, server.log()[-3000:]


@pytest.fixture
async def sentinels(fuzz_server) -> AsyncIterator[tuple]:
    a = await join(fuzz_server, "Sentinel", "A")
    assert await recv(a) == "A joined Sentinel"
    b = await join(fuzz_server, "Sentinel", "B")
    assert await recv(a) == await recv(b) == "B joined Sentinel"
    yield a, b
    # The case is over: the server must still relay, and still answer HTTP.
    await a.send("still chatting")
    assert await recv(a) == await recv(b) == "A: still chatting"
    assert (await asyncio.to_thread(_http_get, fuzz_server.http("/healthz")))[0] == 200
    await a.close()
    await b.close()


def _http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def _open(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def _upgrade(path: str = "/ws/chat/Fuzz/?nickname=Fuzz", **headers: str) -> bytes:
    fields = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
        **headers,
    }
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return (head + "\r\n").encode()


def _handshake(port: int, path: str = "/ws/chat/Fuzz/?nickname=Fuzz") -> socket.socket:
    sock = _open(port)
    sock.sendall(_upgrade(path))
    response = read_head(sock)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, mask: bool = True) -> bytes:
    """One WebSocket frame as a client would send it (masked unless told otherwise)."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    length = len(payload)
    bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(byte ^ key[n % 4] for n, byte in enumerate(payload))


def _read_frames(sock: socket.socket) -> tuple[list[tuple[int, bytes]], bool]:
    """Server frames until the connection ends: [(opcode, payload)], and whether it ended."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    frames, at = [], 0
    while at + 2 <= len(data):
        opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if length == 126:
            length, at = struct.unpack("!H", data[at : at + 2])[0], at + 2
        elif length == 127:
            length, at = struct.unpack("!Q", data[at : at + 8])[0], at + 8
        frames.append((opcode, data[at : at + length]))
        at += length
    return frames, True


def _close_code(frames: list[tuple[int, bytes]]) -> int | None:
    for opcode, payload in frames:
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
    return None


VIOLATIONS = [
    ("invalid UTF-8 in a text frame", frame(0x1, b"\xff\xfe\xc3("), 1007),
    ("reserved data opcode", frame(0x3, b"x"), 1002),
    ("reserved control opcode", frame(0xB, b""), 1002),
    ("control frame over 125 bytes", frame(0x9, b"p" * 126), 1002),
    ("fragmented control frame", frame(0x9, b"p", fin=False), 1002),
    ("unmasked client frame", frame(0x1, b"hello", mask=False), 1002),
    ("reserved bits set", frame(0x1, b"hello", rsv=0b100), 1002),
    ("continuation without a start", frame(0x0, b"orphan"), 1002),
    (
        "new message inside a fragmented one",
        frame(0x1, b"part", fin=False) + frame(0x1, b"other"),
        1002,
    ),
    # A malformed close frame: 1002, written before autobahn drops the connection.
    ("close with a one-byte payload", frame(0x8, b"\x03"), 1002),
    ("close with a reserved code", frame(0x8, struct.pack("!H", 999)), 1002),
    (
        "huge declared length",
        bytes([0x81, 0xFF]) + struct.pack("!Q", 2**63 - 1) + os.urandom(4),
        1009,
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "close"), VIOLATIONS, ids=[case[0] for case in VIOLATIONS]
)
async def test_protocol_violation_fails_only_that_connection(
    fuzz_server, sentinels, name, data, close
):
    sock = _handshake(fuzz_server.port)
    sock.sendall(data)
    frames, _ = await asyncio.to_thread(_read_frames, sock)
    sock.close()
    assert _close_code(frames) == close, (name, frames)


async def test_fragmented_message_with_a_ping_between_fragments_is_one_message(
    fuzz_server, sentinels
):
    a, _ = sentinels
    sock = _handshake(fuzz_server.port)
    await asyncio.sleep(0.5)  # joined
    sock.sendall(
        frame(0x1, b"hel", fin=False)
        + frame(0x9, b"are you there")
        + frame(0x0, b"lo ", fin=False)
        + frame(0x0, "wörld".encode())
    )
    await asyncio.sleep(1)  # relayed
    sock.sendall(frame(0x8, struct.pack("!H", 1000)))
    frames, _ = await asyncio.to_thread(_read_frames, sock)
    sock.close()
    assert (0xA, b"are you there") in frames  # the pong, mid-message
    assert (0x1, "Fuzz: hello wörld".encode()) in frames
    assert _close_code(frames) == 1000


CONTROL_TEXT = [
    ("NUL", "text", b"bad\x00char", "TEXT_INVALID"),
    ("terminal escapes", "text", b"\x1b[2J\x1b[31mred", "TEXT_INVALID"),
    ("every C0 control but tab and newline", "text", bytes(range(32)), "TEXT_INVALID"),
    ("DEL", "text", b"x\x7f", "TEXT_INVALID"),
    ("C1 control", "text", "a\x85b\x9b".encode(), "TEXT_INVALID"),
    ("line separator", "text", "a\u2028b".encode(), "TEXT_INVALID"),
    ("escaped NUL in JSON", "json", b'{"type": "message", "text": "a\\u0000b"}', "TEXT_INVALID"),
    (
        "escaped escape in JSON",
        "json",
        b'{"type": "message", "text": "\\u001b[0m"}',
        "TEXT_INVALID",
    ),
    (
        "raw control in a JSON string",
        "json",
        b'{"type": "message", "text": "a\x01b"}',
        "JSON_INVALID",
    ),
]


@pytest.mark.parametrize(
    ("name", "fmt", "payload", "code"), CONTROL_TEXT, ids=[case[0] for case in CONTROL_TEXT]
)
async def test_control_characters_in_a_text_frame_get_an_error_and_the_session_goes_on(
    fuzz_server, sentinels, name, fmt, payload, code
):
    sock = _handshake(fuzz_server.port, f"/ws/chat/Controls/?nickname=Fuzz&format={fmt}&history=0")
    try:  # closed whatever happens: the next case joins under the same nickname
        joined = await asyncio.to_thread(_read_text, sock)
        if fmt == "json":
            assert orjson.loads(joined)["type"] == "welcome"
            joined = orjson.loads(await asyncio.to_thread(_read_text, sock))
            assert (joined["type"], joined["nickname"]) == ("join", "Fuzz")
        else:
            assert joined == "Fuzz joined Controls"
        sock.sendall(frame(0x1, payload))
        error = await asyncio.to_thread(_read_text, sock)
        if fmt == "json":
            assert (orjson.loads(error)["code"], orjson.loads(error)["close"]) == (code, None)
            sock.sendall(frame(0x1, b'{"type": "message", "text": "after"}'))
            assert orjson.loads(await asyncio.to_thread(_read_text, sock))["text"] == "after"
        else:
            assert error.startswith(f"error {code}: "), (name, error)
            sock.sendall(frame(0x1, b"after"))
            assert await asyncio.to_thread(_read_text, sock) == "Fuzz: after"
        sock.sendall(frame(0x8, struct.pack("!H", 1000)))
        frames, _ = await asyncio.to_thread(_read_frames, sock)
    finally:
        sock.close()
    assert _close_code(frames) == 1000


HIDDEN_NAMES = [
    ("right-to-left override nickname", "Fuzz", "\u202enimda", "NICKNAME_INVALID"),
    ("isolates around a nickname", "Fuzz", "\u2066Bob\u2069", "NICKNAME_INVALID"),
    ("zero-width space nickname", "Fuzz", "\u200b", "NICKNAME_INVALID"),
    ("zero-width joiner in a nickname", "Fuzz", "Al\u200dice", "NICKNAME_INVALID"),
    ("hangul filler nickname", "Fuzz", "\u3164", "NICKNAME_INVALID"),
    ("braille blank nickname", "Fuzz", "\u2800", "NICKNAME_INVALID"),
    ("byte order mark in a nickname", "Fuzz", "\ufeffBob", "NICKNAME_INVALID"),
    ("tag characters in a nickname", "Fuzz", "Bob\U000e0041", "NICKNAME_INVALID"),
    ("nickname without a letter", "Fuzz", "👩\u200d💻", "NICKNAME_INVALID"),
    ("right-to-left override room", "\u202emoor", "Fuzz", "ROOM_INVALID"),
    ("arabic letter mark room", "Room\u061c", "Fuzz", "ROOM_INVALID"),
    ("invisible room", "\u3164\u200b", "Fuzz", "ROOM_INVALID"),
    ("room without a letter", "🍳", "Fuzz", "ROOM_INVALID"),
]


@pytest.mark.parametrize(
    ("name", "room", "nickname", "code"), HIDDEN_NAMES, ids=[case[0] for case in HIDDEN_NAMES]
)
async def test_bidi_and_invisible_names_are_refused_at_the_handshake(
    fuzz_server, sentinels, name, room, nickname, code
):
    sock = _handshake(fuzz_server.port, chat_path(room, nickname))
    frames, _ = await asyncio.to_thread(_read_frames, sock)
    sock.close()
    assert frames[0][0] == 0x1 and frames[0][1].decode().startswith(f"error {code}: "), name
    assert _close_code(frames) == 4400


BAD_HANDSHAKES = [
    ("binary garbage", os.urandom(64) + b"\r\n\r\n"),
    ("no request line", b"\r\n\r\n"),
    ("upgrade without a key", _upgrade(**{"Sec-WebSocket-Key": ""})),
    ("unsupported version", _upgrade(**{"Sec-WebSocket-Version": "99"})),
    ("non-ASCII path", b"GET /ws/chat/\xff\xfe/ HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("header too large", _upgrade(**{"X-Big": "a" * 70000})),
    ("a thousand headers", _upgrade(**{f"X-{n}": "v" for n in range(1000)})),
    ("bad header line", b"GET /ws/chat/R/ HTTP/1.1\r\nno colon here\r\n\r\n"),
]


@pytest.mark.parametrize(
    ("name", "request_bytes"), BAD_HANDSHAKES, ids=[case[0] for case in BAD_HANDSHAKES]
)
async def test_malformed_handshake_is_refused_without_an_upgrade(
    fuzz_server, sentinels, name, request_bytes
):
    sock = _open(fuzz_server.port)
    sock.sendall(request_bytes)
    response = b""
    try:
        while chunk := sock.recv(65536):
            response += chunk
            if b"\r\n\r\n" in response:
                break
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    assert not response.startswith(b"HTTP/1.1 101"), name
    assert response == b"" or response.startswith(b"HTTP/1.1 4"), (name, response[:200])


async def test_a_handshake_in_pieces_or_with_frames_behind_it_joins_like_any_other(
    fuzz_server, sentinels
):
    member = await join(fuzz_server, "Pieces", "Member")
    assert await recv(member) == "Member joined Pieces"
    split = _open(fuzz_server.port)  # the head in two reads: Daphne's HTTP path
    head = _upgrade("/ws/chat/Pieces/?nickname=Split")
    split.sendall(head[:30])
    await asyncio.sleep(0.2)
    split.sendall(head[30:])
    assert read_head(split).startswith(b"HTTP/1.1 101")
    assert _read_text(split) == await recv(member) == "Split joined Pieces"
    eager = _open(fuzz_server.port)  # the head and a message in one write
    eager.sendall(_upgrade("/ws/chat/Pieces/?nickname=Eager") + frame(0x1, b"hi"))
    assert read_head(eager).startswith(b"HTTP/1.1 101")
    assert _read_text(eager) == await recv(member) == "Eager joined Pieces"
    assert _read_text(eager) == await recv(member) == "Eager: hi"
    for sock in (split, eager):
        sock.close()
    await member.close()


def _read_text(sock: socket.socket) -> str:
    """One unmasked text frame from the server, under 64 KiB."""
    opcode, length = sock.recv(2, socket.MSG_WAITALL)
    assert opcode == 0x81 and length <= 126
    if length == 126:
        length = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
    return sock.recv(length, socket.MSG_WAITALL).decode()


async def test_slowloris_handshakes_are_cut_off_and_others_keep_chatting(fuzz_server, sentinels):
    a, b = sentinels
    head = _upgrade()
    socks = [_open(fuzz_server.port) for _ in range(50)]
    for sock in socks:
        sock.sendall(head[:20])
    for n in range(5):  # the room works while 50 handshakes trickle in
        await a.send(f"during slowloris {n}")
        assert await recv(b) == f"A: during slowloris {n}"
        for sock in socks:
            sock.sendall(head[20 + n : 21 + n])
        await asyncio.sleep(0.1)
    start = time.monotonic()
    ended = await asyncio.gather(*(asyncio.to_thread(_ended, sock) for sock in socks))
    assert all(ended)
    assert time.monotonic() - start < HANDSHAKE_TIMEOUT + 8  # idle heads are dropped
    await asyncio.gather(*(recv(a) for _ in range(5)))
    for sock in socks:
        sock.close()


def _ended(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


async def test_thousands_of_connect_disconnect_cycles_leave_nothing_behind(fuzz_server, sentinels):
    async def tcp_only() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", fuzz_server.port)
        writer.close()
        await writer.wait_closed()

    async def websocket(n: int) -> None:
        # A room each: see docs/operations.md on closes racing a room's mass disconnect.
        ws = await connect(fuzz_server.url(f"/ws/chat/Churn{n}/?nickname=c"), open_timeout=10)
        if n % 2:
            await ws.close()
        else:
            ws.transport.abort()  # no close frame, just gone

    for _ in range(20):
        await asyncio.gather(*(tcp_only() for _ in range(100)))
    for start in range(0, 1000, 20):
        await asyncio.gather(*(websocket(n) for n in range(start, start + 20)))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        _, body = await asyncio.to_thread(_http_get, fuzz_server.http("/metrics"))
        if "\nrooms_connections 2\n" in body:
            break
        await asyncio.sleep(0.2)
    assert "\nrooms_connections 2\n" in body  # only the sentinels are left


def _answer(port: int, head: bytes, split_at: int | None = None) -> bytes:
    """The server's response head to `head`, sent in one write or split in two reads."""
    sock = _open(port)
    if split_at is None:
        sock.sendall(head)
    else:
        sock.sendall(head[:split_at])
        time.sleep(0.1)
        sock.sendall(head[split_at:])
    response = b""
    try:
        while b"\r\n\r\n" not in response and (chunk := sock.recv(65536)):
            response += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    return response


REFUSED_TARGET_BYTES = [
    ("control", b"\x01"),
    ("tab", b"\t"),
    ("vertical tab", b"\x0b"),  # a line break to autobahn
    ("form feed", b"\x0c"),
    ("record separator", b"\x1e"),
    ("unit separator", b"\x1f"),
    ("space", b" "),
    ("high byte", b"\x85"),  # a line break to autobahn, refused by Daphne as not ASCII
    ("high byte Twisted refuses", b"\xff"),
]


@pytest.mark.parametrize(
    ("name", "byte"), REFUSED_TARGET_BYTES, ids=[case[0] for case in REFUSED_TARGET_BYTES]
)
@pytest.mark.parametrize("where", ["path", "query"])
async def test_a_target_with_a_byte_twisted_refuses_is_never_upgraded(
    fuzz_server, sentinels, name, byte, where
):
    target = b"/ws/chat/Fuzz/?nickname=Fu" + byte + b"zz"
    if where == "path":
        target = b"/ws/chat/Fu" + byte + b"zz/?nickname=Fuzz"
    head = _upgrade().replace(b"/ws/chat/Fuzz/?nickname=Fuzz", target, 1)
    whole = await asyncio.to_thread(_answer, fuzz_server.port, head)
    split = await asyncio.to_thread(_answer, fuzz_server.port, head, 10)  # Twisted's path
    status = whole.partition(b"\r\n")[0]
    assert status.startswith(b"HTTP/1.1 400"), (name, whole[:200])
    assert status == split.partition(b"\r\n")[0]  # as Twisted's path answers, no echo


async def test_del_in_a_target_gets_one_answer_however_the_head_arrives(fuzz_server, sentinels):
    # Twisted lets DEL through (docs/operations.md, Bad input): upgraded either way, then
    # refused by the nickname check, like any other invalid nickname. httptools (the fast
    # launcher) refuses the request: 400.
    head = _upgrade("/ws/chat/Fuzz/?nickname=Fu\x7fzz")
    for split_at in (None, 10):
        sock = _open(fuzz_server.port)
        sock.sendall(head[:split_at])
        if split_at:
            await asyncio.sleep(0.1)
            sock.sendall(head[split_at:])
        if fuzz_server.kind == "fast":
            assert read_head(sock).startswith(b"HTTP/1.1 400")
            sock.close()
            continue
        assert read_head(sock).startswith(b"HTTP/1.1 101")
        frames, _ = await asyncio.to_thread(_read_frames, sock)
        sock.close()
        assert frames[0][1].startswith(b"error NICKNAME_INVALID"), frames
        assert _close_code(frames) == 4400
