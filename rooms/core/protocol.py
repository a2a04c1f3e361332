"""The wire protocol as pure functions: handshake and frame parsing, event encoding.

Two formats share every room: the seed's plain text (default) and JSON objects
(`?format=json`). A room event is encoded once per message into both formats, as a dict
keyed by format name, so each recipient only picks its string. docs/protocol.md is the
reference; nothing here does I/O or touches Django.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs

import orjson

from rooms.core import errors
from rooms.core.errors import ClientError
from rooms.core.names import code_point, nickname_key, parse_nickname, parse_room

TEXT = "text"
JSON = "json"
FORMATS = (TEXT, JSON)

COMMAND_PREFIX = "/"  # text format: a frame starting with it is a command; "//" escapes it

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

# Moderators' commands (docs/protocol.md, Moderation).
KICK, BAN, MUTE, UNBAN, UNMUTE, DELETE = "kick", "ban", "mute", "unban", "unmute", "delete"
SANCTIONS = (KICK, BAN, MUTE, UNBAN, UNMUTE)  # commands naming a member
DEFAULT_SECONDS = {BAN: 3600, MUTE: 600}  # when a ban or mute does not say how long
MAX_SECONDS = 366 * 86400  # the longest ban or mute
MAX_REASON_LENGTH = 200  # the longest reason (Sanction.reason holds as much)
MAX_TARGET_LENGTH = 64  # a longer nickname names no member (names.MAX_NICKNAME_LENGTH is 32)
# What each command may carry besides its type and target (JSON), in text order.
_OPTIONS = {KICK: ("reason",), BAN: ("seconds", "reason"), MUTE: ("seconds",)}


@dataclass(frozen=True, slots=True)
class Moderate:
    """A moderator's command: a sanction on the member `nickname`, or deleting message `id`."""

    action: str
    nickname: str = ""
    seconds: int = 0  # bans and mutes: how long
    reason: str = ""
    id: int = 0  # delete: the message


def requested_format(query_string: bytes) -> str:
    """The format to answer in, also when the handshake is refused: JSON only if asked."""
    fmt = parse_qs(query_string.decode("latin-1")).get("format", [TEXT])[0]
    return fmt if fmt in FORMATS else TEXT


def parse_handshake(room: str, query_string: bytes, signed_in: str | None = None) -> Handshake:
    """Turn the URL's room and query string into a Handshake, or raise ClientError. A
    signed-in user (`signed_in`: the name they join under) may leave ?nickname= out; if it
    is there, it must be that name."""
    query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    fmt = query.get("format", [TEXT])[0]
    if fmt not in FORMATS:
        raise ClientError(
            errors.FORMAT_INVALID,
            f"Unknown format {fmt!r}: use one of {', '.join(FORMATS)}.",
            errors.WS_4400_BAD_REQUEST,
        )
    room = parse_room(room)
    asked = query.get("nickname", [None])[0]
    if signed_in is None:
        nickname = parse_nickname(asked)
    else:
        nickname = parse_nickname(signed_in)
        if asked is not None and nickname_key(asked.strip()) != nickname_key(nickname):
            raise errors.nickname_not_yours(nickname)
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


Command = str | Who | Moderate


def parse_message(text: str | None, data: bytes | None, fmt: str, max_length: int) -> Command:
    """Return the chat text a client frame carries, WHO, or a moderator's command; raise a
    non-fatal ClientError."""
    if text is None:
        raise ClientError(errors.BINARY_UNSUPPORTED, "Binary frames are not accepted; send text.")
    if fmt == JSON:
        text = _parse_json_command(text)
    elif text.startswith(COMMAND_PREFIX):
        text = _parse_text_command(text)
    if not isinstance(text, str):
        return text  # WHO, or a moderator's command
    return parse_text(text, max_length)


def parse_text(text: str, max_length: int) -> str:
    """Return a message's text if a room may carry it (its length, no control characters);
    raise a non-fatal ClientError. The one rule for clients' and the server's own messages."""
    if len(text) > max_length:
        raise ClientError(errors.MESSAGE_TOO_LONG, f"Messages are at most {max_length} characters.")
    control = _TEXT_CONTROL.search(text)
    if control is not None:
        raise ClientError(
            errors.TEXT_INVALID,
            "Messages cannot contain control characters other than tab and newline "
            f"(found {code_point(control.group())}).",
        )
    return text


def _parse_text_command(frame: str) -> Command:
    if frame.startswith(COMMAND_PREFIX * 2):
        return frame[1:]
    if frame.rstrip() == "/who":
        return WHO
    name, _, rest = frame[1:].partition(" ")
    if name == DELETE:
        return _delete(rest.strip())
    if name in SANCTIONS:
        return _text_sanction(name, rest)
    raise ClientError(
        errors.COMMAND_UNKNOWN,
        f"Unknown command {frame.split()[0][:40]!r}: the commands are /who, and for "
        "moderators /kick, /ban, /mute, /unban, /unmute and /delete; "
        "start a message with // to send one beginning with /.",
    )


def _text_sanction(action: str, rest: str) -> Moderate:
    """`/kick Nick reason`, `/ban Nick [seconds] [reason]`, `/mute Nick [seconds]`,
    `/unban Nick`, `/unmute Nick`: the nickname is one word (JSON takes any)."""
    nickname, _, rest = rest.strip().partition(" ")
    rest = rest.strip()
    options: dict[str, object] = {}
    wanted = _OPTIONS.get(action, ())
    if "seconds" in wanted and _digits(rest.split(" ", 1)[0]):
        seconds, _, rest = rest.partition(" ")
        options["seconds"], rest = int(seconds) if len(seconds) <= 18 else -1, rest.strip()
    if rest and "reason" in wanted:
        options["reason"] = rest
    elif rest:
        raise _invalid(action, f"/{action} takes {_usage(action)}")
    return _sanction(action, nickname, **options)


def _usage(action: str) -> str:
    options = " ".join(f"[{option}]" for option in _OPTIONS.get(action, ()))
    return f"a nickname {options}".rstrip()


def _json_sanction(command: dict) -> Moderate:
    action = command["type"]
    extra = command.keys() - {"type", "nickname", *_OPTIONS.get(action, ())}
    if extra or not isinstance(command.get("nickname"), str):
        raise _invalid(action, f'{{"type": "{action}"}} takes {_usage(action)}')
    options = {key: command[key] for key in _OPTIONS.get(action, ()) if key in command}
    return _sanction(action, command["nickname"], **options)


def _sanction(action: str, nickname: str, seconds: object = None, reason: object = "") -> Moderate:
    nickname = nickname.strip()
    if not nickname or len(nickname) > MAX_TARGET_LENGTH:
        raise _invalid(action, f"{action} needs the nickname of a member")
    if seconds is None:
        seconds = DEFAULT_SECONDS.get(action, 0)
    elif type(seconds) is not int or not 1 <= seconds <= MAX_SECONDS:
        raise _invalid(action, f"seconds must be a whole number from 1 to {MAX_SECONDS}")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH:
        raise _invalid(action, f"a reason is text of at most {MAX_REASON_LENGTH} characters")
    if _TEXT_CONTROL.search(reason) or "\n" in reason or "\t" in reason:
        raise _invalid(action, "a reason is one line without control characters")
    return Moderate(action, nickname=nickname, seconds=seconds, reason=reason.strip())


def _digits(raw: str) -> bool:
    return raw.isascii() and raw.isdigit()


def _delete(raw: object) -> Moderate:
    """`raw`: the JSON id, or the text command's argument."""
    if isinstance(raw, str):
        raw = int(raw) if _digits(raw) and len(raw) <= 18 else None
    if type(raw) is not int or raw < 1:
        raise _invalid(DELETE, "delete needs a message id, a whole number of 1 or more")
    return Moderate(DELETE, id=raw)


def _invalid(action: str, why: str) -> ClientError:
    return ClientError(errors.COMMAND_INVALID, f"Cannot {action}: {why}.")


def _parse_json_command(frame: str) -> Command:
    try:
        command = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise ClientError(errors.JSON_INVALID, "Frames must be JSON objects.")
    if isinstance(command, dict) and command.get("type") == "who" and len(command) == 1:
        return WHO
    if isinstance(command, dict) and command.get("type") in SANCTIONS:
        return _json_sanction(command)
    if isinstance(command, dict) and command.get("type") == DELETE:
        if command.keys() != {"type", "id"}:
            raise _invalid(DELETE, 'expected {"type": "delete", "id": ID}')
        return _delete(command["id"] if not isinstance(command["id"], str) else None)
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


def welcome(
    room: str, nickname: str, members: list[str], last_id: int, ts: int, moderator: bool = False
) -> str:
    """The first JSON frame a joiner receives (text clients get none); `moderator` only
    when the joiner moderates the room."""
    frame = {
        "type": "welcome",
        "room": room,
        "nickname": nickname,
        "members": members,
        "last_id": last_id,
        "ts": ts,
    }
    if moderator:
        frame["moderator"] = True
    return _json(frame)


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


def deleted(room: str, id: int, nickname: str, ts: int) -> Frames:
    """A moderator deleted message `id` (by `nickname`): pages remove it. Text clients, who
    never see ids, are told whose message went."""
    return {
        TEXT: f"A moderator deleted a message by {nickname}",
        JSON: _json({"type": "delete", "room": room, "id": id, "nickname": nickname, "ts": ts}),
    }


def moderated(room: str, command: Moderate, target: str, until: int | None, fmt: str) -> str:
    """The reply to a moderator's command, to that moderator only: what was done, to whom
    (`target`: the member's nickname as they hold it), until when (ms) for bans and mutes."""
    if fmt == JSON:
        frame: dict = {"type": "moderated", "room": room, "action": command.action}
        if command.action == DELETE:
            frame["id"] = command.id
        else:
            frame["nickname"] = target
        if until is not None:
            frame["until"] = until
        return _json(frame)
    if command.action == DELETE:
        return f"Message {command.id} deleted"
    until_text = f" until {_iso(until)}" if until is not None else ""
    return f"{target} {_DONE[command.action]}{until_text}"


_DONE = {KICK: "removed", BAN: "banned", MUTE: "muted", UNBAN: "unbanned", UNMUTE: "unmuted"}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def error(err: ClientError, fmt: str) -> str:
    """The one place a ClientError becomes a frame."""
    if fmt == JSON:
        return _json(
            {"type": "error", "code": err.code, "message": err.message, "close": err.close_code}
        )
    return f"error {err.code}: {err.message}"
