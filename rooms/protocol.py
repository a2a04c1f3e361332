"""The wire protocol as pure functions: handshake and frame parsing, event encoding.

Two formats share every room: the seed's plain text (default) and JSON objects
(`?format=json`). A room event is encoded once per message into both formats, as a dict
keyed by format name, so each recipient only picks its string. docs/protocol.md is the
reference; nothing here does I/O or touches Django.
"""

import unicodedata
from dataclasses import dataclass
from urllib.parse import parse_qs

import orjson

from rooms import errors
from rooms.errors import ClientError

TEXT = "text"
JSON = "json"
FORMATS = (TEXT, JSON)

MAX_NICKNAME_LENGTH = 32
MAX_ROOM_NAME_LENGTH = 100

# Unicode categories refused in names: controls, unassigned, surrogates, private use,
# and line/paragraph separators. Format characters (Cf) stay allowed for emoji sequences.
_FORBIDDEN_CATEGORIES = {"Cc", "Cn", "Cs", "Co", "Zl", "Zp"}

Frames = dict[str, str]


@dataclass(frozen=True, slots=True)
class Handshake:
    """What a client asked for when it connected."""

    room: str
    nickname: str
    format: str


def _printable(name: str) -> bool:
    return not any(unicodedata.category(char) in _FORBIDDEN_CATEGORIES for char in name)


def parse_room(room: str) -> str:
    """Validate a room name taken from the URL path (already percent-decoded)."""
    if not room or len(room) > MAX_ROOM_NAME_LENGTH or "/" in room or not _printable(room):
        raise ClientError(
            errors.ROOM_INVALID,
            f"Room names are 1 to {MAX_ROOM_NAME_LENGTH} printable characters, without '/'.",
            errors.WS_4400_BAD_REQUEST,
        )
    return room


def parse_nickname(raw: str | None) -> str:
    """Validate a nickname; surrounding whitespace is dropped."""
    nickname = (raw or "").strip()
    if not nickname:
        raise ClientError(
            errors.NICKNAME_REQUIRED, "No nickname specified.", errors.WS_4400_BAD_REQUEST
        )
    if len(nickname) > MAX_NICKNAME_LENGTH or not _printable(nickname):
        raise ClientError(
            errors.NICKNAME_INVALID,
            f"Nicknames are 1 to {MAX_NICKNAME_LENGTH} printable characters.",
            errors.WS_4400_BAD_REQUEST,
        )
    return nickname


def parse_handshake(room: str, query_string: bytes) -> Handshake:
    """Turn the URL's room and query string into a Handshake, or raise ClientError."""
    query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    fmt = query.get("format", [TEXT])[0]
    if fmt not in FORMATS:
        raise ClientError(
            errors.FORMAT_INVALID,
            f"Unknown format {fmt!r}: use one of {', '.join(FORMATS)}.",
            errors.WS_4400_BAD_REQUEST,
        )
    room = parse_room(room)
    nickname = parse_nickname(query.get("nickname", [None])[0])
    return Handshake(room=room, nickname=nickname, format=fmt)


def parse_message(text: str | None, data: bytes | None, fmt: str, max_length: int) -> str:
    """Return the chat text a client frame carries, or raise a non-fatal ClientError."""
    if text is None:
        raise ClientError(errors.BINARY_UNSUPPORTED, "Binary frames are not accepted; send text.")
    if fmt == JSON:
        text = _parse_json_command(text)
    if len(text) > max_length:
        raise ClientError(errors.MESSAGE_TOO_LONG, f"Messages are at most {max_length} characters.")
    return text


def _parse_json_command(frame: str) -> str:
    try:
        command = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise ClientError(errors.JSON_INVALID, "Frames must be JSON objects.")
    if (
        not isinstance(command, dict)
        or command.get("type") != "message"
        or not isinstance(command.get("text"), str)
    ):
        raise ClientError(errors.COMMAND_INVALID, 'Expected {"type": "message", "text": "..."}.')
    return command["text"]


def _json(obj: dict) -> str:
    return orjson.dumps(obj).decode()


def joined(room: str, nickname: str, ts: int) -> Frames:
    """Someone entered the room."""
    return {
        TEXT: f"{nickname} joined {room}",
        JSON: _json({"type": "join", "room": room, "nickname": nickname, "ts": ts}),
    }


def left(room: str, nickname: str, ts: int) -> Frames:
    """Someone left the room (closed, or the connection dropped)."""
    return {
        TEXT: f"{nickname} left the room",
        JSON: _json({"type": "leave", "room": room, "nickname": nickname, "ts": ts}),
    }


def message(room: str, nickname: str, text: str, id: int, ts: int) -> Frames:
    """A chat message, with its room-wide id and server time."""
    return {
        TEXT: f"{nickname}: {text}",
        JSON: _json(
            {
                "type": "message",
                "id": id,
                "room": room,
                "nickname": nickname,
                "text": text,
                "ts": ts,
            }
        ),
    }


def welcome(room: str, nickname: str, ts: int) -> str:
    """The first JSON frame a joiner receives (text clients get none)."""
    return _json({"type": "welcome", "room": room, "nickname": nickname, "ts": ts})


def error(err: ClientError, fmt: str) -> str:
    """The one place a ClientError becomes a frame."""
    if fmt == JSON:
        return _json(
            {"type": "error", "code": err.code, "message": err.message, "close": err.close_code}
        )
    return f"error {err.code}: {err.message}"
