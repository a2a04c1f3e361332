"""The wire protocol as pure functions: handshake and frame parsing, event encoding.

Two formats share every room: the seed's plain text (default) and JSON objects
(`?format=json`). A room event is encoded once per message into both formats, as a dict
keyed by format name, so each recipient only picks its string. docs/protocol.md is the
reference; nothing here does I/O or touches Django.
"""

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import parse_qs

import orjson

from rooms.core import errors
from rooms.core.confusables import PROTOTYPES
from rooms.core.errors import ClientError

TEXT = "text"
JSON = "json"
FORMATS = (TEXT, JSON)

MAX_NICKNAME_LENGTH = 32
COMMAND_PREFIX = "/"  # text format: a frame starting with it is a command; "//" escapes it
MAX_ROOM_NAME_LENGTH = 100

# Unicode categories refused in names: controls, unassigned, surrogates, private use,
# and line/paragraph separators. Format characters (Cf) are refused as invisible below.
_FORBIDDEN_CATEGORIES = {"Cc", "Cn", "Cs", "Co", "Zl", "Zp"}

# Default_Ignorable_Code_Point (DerivedCoreProperties.txt, Unicode 17.0): characters no font
# shows. Among them the bidi controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069,
# which make "\u202enimda" show as "admin"), the zero-width characters, the Hangul fillers
# (U+115F, U+1160, U+3164, U+FFA0: letters, yet blank), variation selectors and tags. Names
# refuse them all but ZWJ and VS16 inside emoji sequences.
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
    (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)  # fmt: skip
_IGNORABLE = re.compile(
    "[" + "".join(f"{chr(low)}-{chr(high)}" for low, high in _DEFAULT_IGNORABLE) + "]"
)
_BRAILLE_BLANK = "\u2800"  # a symbol, not ignorable, but blank in every font: the usual blank name
_ZWJ, _VS16, _KEYCAP = "\u200d", "\ufe0f", "\u20e3"
_KEYCAP_BASES = "#*0123456789"
_EMOJI_MODIFIERS = ("\U0001f3fb", "\U0001f3ff")  # skin tones, category Sk

# Control characters refused in message text: every Cc but tab and newline (PostgreSQL
# cannot store NUL; the others are terminal escapes and invisible), and the line and
# paragraph separators, line breaks that only some renderers honour: "\n" is the one.
_TEXT_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")

Frames = dict[str, str]


@dataclass(frozen=True, slots=True)
class Handshake:
    """What a client asked for when it connected."""

    room: str
    nickname: str
    format: str
    history: int | None = None  # ?history=N: the last N messages before live ones
    since: int | None = None  # ?since=ID: every message after ID (reconnect recovery)


class Who:
    """The command asking for the room's member list (`/who`, `{"type": "who"}`)."""

    __slots__ = ()


WHO = Who()


def _emoji(char: str) -> bool:
    # Category So stands in for Extended_Pictographic, which Python's unicodedata lacks.
    return unicodedata.category(char) == "So"


def _shown(name: str, index: int) -> bool:
    """Whether name[index], a ZWJ or VS16, does something visible: inside an emoji sequence
    ("👩‍💻", "❤️", "1️⃣") it does; after a letter it only hides a difference."""
    before = name[index - 1] if index else ""
    if name[index] == _VS16:
        if before and before in _KEYCAP_BASES:
            return name[index + 1 : index + 2] == _KEYCAP
        return unicodedata.category(before)[:1] in ("S", "P") if before else False
    if before == _VS16 and index >= 2:
        before = name[index - 2]
    after = name[index + 1 : index + 2]
    if not (before and after):
        return False
    emoji_before = _emoji(before) or _EMOJI_MODIFIERS[0] <= before <= _EMOJI_MODIFIERS[1]
    return emoji_before and _emoji(after)


def _hidden(name: str, index: int) -> bool:
    char = name[index]
    if char in (_ZWJ, _VS16):
        return not _shown(name, index)
    category = unicodedata.category(char)
    return (
        category in _FORBIDDEN_CATEGORIES
        or category == "Cf"
        or char == _BRAILLE_BLANK
        or _IGNORABLE.match(char) is not None
    )


def _unusable(name: str) -> str | None:
    """Why a nickname or room name would not show as what it is, or None if it would."""
    for index, char in enumerate(name):
        if _hidden(name, index):
            return (
                "cannot contain invisible, control, unassigned or direction-changing "
                f"characters (found {_code_point(char)})"
            )
    if not any(unicodedata.category(char)[0] in "LN" for char in name):
        return "need at least one letter or digit"
    return None


def parse_room(room: str) -> str:
    """Validate a room name taken from the URL path (already percent-decoded); return it in
    NFC, so that canonically equivalent spellings name one room (case still matters)."""
    room = unicodedata.normalize("NFC", room)
    if not room or len(room) > MAX_ROOM_NAME_LENGTH or "/" in room:
        raise ClientError(
            errors.ROOM_INVALID,
            f"Room names are 1 to {MAX_ROOM_NAME_LENGTH} printable characters, without '/'.",
            errors.WS_4400_BAD_REQUEST,
        )
    problem = _unusable(room)
    if problem is not None:
        raise ClientError(errors.ROOM_INVALID, f"Room names {problem}.", errors.WS_4400_BAD_REQUEST)
    return room


def parse_nickname(raw: str | None) -> str:
    """Validate a nickname; surrounding whitespace is dropped, the rest kept as typed."""
    nickname = (raw or "").strip()
    if not nickname:
        raise ClientError(
            errors.NICKNAME_REQUIRED, "No nickname specified.", errors.WS_4400_BAD_REQUEST
        )
    if len(nickname) > MAX_NICKNAME_LENGTH:
        raise ClientError(
            errors.NICKNAME_INVALID,
            f"Nicknames are 1 to {MAX_NICKNAME_LENGTH} printable characters.",
            errors.WS_4400_BAD_REQUEST,
        )
    problem = _unusable(nickname)
    if problem is not None:
        raise ClientError(
            errors.NICKNAME_INVALID, f"Nicknames {problem}.", errors.WS_4400_BAD_REQUEST
        )
    return nickname


def _fold(text: str) -> str:
    # Unicode's compatibility caseless match (D146): stable under NFKC and casefolding.
    once = unicodedata.normalize("NFKD", unicodedata.normalize("NFD", text).casefold())
    return unicodedata.normalize("NFKD", once.casefold())


def nickname_key(nickname: str) -> str:
    """What two nicknames share when people could take one for the other, so that a room
    holds one of them: the UTS #39 skeleton (invisible characters dropped, each character
    replaced by its confusable prototype) of the nickname with case and width folded,
    folded again. "Alice", "alice", "Ａｌｉｃｅ" and "Аlice" (Cyrillic А) share one key."""
    skeleton = _IGNORABLE.sub("", _fold(nickname)).translate(PROTOTYPES)
    return _fold(skeleton)


def requested_format(query_string: bytes) -> str:
    """The format to answer in, also when the handshake is refused: JSON only if asked."""
    fmt = parse_qs(query_string.decode("latin-1")).get("format", [TEXT])[0]
    return fmt if fmt in FORMATS else TEXT


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
    history = _count(query, "history", errors.HISTORY_INVALID)
    since = _count(query, "since", errors.SINCE_INVALID)
    return Handshake(room=room, nickname=nickname, format=fmt, history=history, since=since)


def _count(query: dict[str, list[str]], key: str, code: str) -> int | None:
    raw = query.get(key, [None])[0]
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ClientError(
            code, f"{key} must be a whole number, 0 or more.", errors.WS_4400_BAD_REQUEST
        )
    return int(raw)


def parse_message(text: str | None, data: bytes | None, fmt: str, max_length: int) -> str | Who:
    """Return the chat text a client frame carries, or WHO; raise a non-fatal ClientError."""
    if text is None:
        raise ClientError(errors.BINARY_UNSUPPORTED, "Binary frames are not accepted; send text.")
    if fmt == JSON:
        text = _parse_json_command(text)
    elif text.startswith(COMMAND_PREFIX):
        text = _parse_text_command(text)
    if text is WHO:
        return WHO
    if len(text) > max_length:
        raise ClientError(errors.MESSAGE_TOO_LONG, f"Messages are at most {max_length} characters.")
    control = _TEXT_CONTROL.search(text)
    if control is not None:
        raise ClientError(
            errors.TEXT_INVALID,
            "Messages cannot contain control characters other than tab and newline "
            f"(found {_code_point(control.group())}).",
        )
    return text


def _code_point(char: str) -> str:
    return f"U+{ord(char):04X}"


def _parse_text_command(frame: str) -> str | Who:
    if frame.startswith(COMMAND_PREFIX * 2):
        return frame[1:]
    if frame.rstrip() == "/who":
        return WHO
    raise ClientError(
        errors.COMMAND_UNKNOWN,
        f"Unknown command {frame.split()[0][:40]!r}: the only command is /who; "
        "start a message with // to send one beginning with /.",
    )


def _parse_json_command(frame: str) -> str | Who:
    try:
        command = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise ClientError(errors.JSON_INVALID, "Frames must be JSON objects.")
    if isinstance(command, dict) and command.get("type") == "who" and len(command) == 1:
        return WHO
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


def message_parts(room: str, nickname: str, text: str) -> tuple[str, tuple[str, str, str]]:
    """A message's text frame, and its JSON frame cut where the id and the ts go.

    The id and ts are filled in by whoever assigns them atomically with the publish
    (rooms.state.sequence, possibly inside Redis), so the rest is encoded once, here.
    """
    return f"{nickname}: {text}", (
        '{"type":"message","id":',
        f',"room":{_json(room)},"nickname":{_json(nickname)},"text":{_json(text)},"ts":',
        "}",
    )


def message(room: str, nickname: str, text: str, id: int, ts: int) -> Frames:
    """A chat message, with its room-wide id and server time."""
    text_frame, (head, middle, tail) = message_parts(room, nickname, text)
    return {TEXT: text_frame, JSON: f"{head}{id}{middle}{ts}{tail}"}


def replayed(json_frame: str, fmt: str) -> str:
    """A stored message (kept as its JSON frame) in a client's format, for history."""
    if fmt == JSON:
        return json_frame
    event = orjson.loads(json_frame)
    return f"{event['nickname']}: {event['text']}"


def welcome(room: str, nickname: str, members: list[str], last_id: int, ts: int) -> str:
    """The first JSON frame a joiner receives (text clients get none)."""
    return _json(
        {
            "type": "welcome",
            "room": room,
            "nickname": nickname,
            "members": members,
            "last_id": last_id,
            "ts": ts,
        }
    )


def members(room: str, nicknames: list[str], fmt: str) -> str:
    """The reply to WHO: the room's members, to the asker only."""
    if fmt == JSON:
        return _json({"type": "members", "room": room, "members": nicknames})
    return f"Members of {room} ({len(nicknames)}): {', '.join(nicknames)}"


def gap(room: str, first: int, last: int, fmt: str) -> str:
    """Recovery could not replay messages first..last: they are no longer retained."""
    if fmt == JSON:
        return _json({"type": "gap", "room": room, "from": first, "to": last})
    return f"Messages {first} to {last} of {room} are no longer available"


def error(err: ClientError, fmt: str) -> str:
    """The one place a ClientError becomes a frame."""
    if fmt == JSON:
        return _json(
            {"type": "error", "code": err.code, "message": err.message, "close": err.close_code}
        )
    return f"error {err.code}: {err.message}"
