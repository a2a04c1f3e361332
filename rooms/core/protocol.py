"""The wire protocol as pure functions: handshake parsing and the encoding of every frame.

Two formats share every room: the seed's plain text (default) and JSON objects
(`?format=json`). A room event is encoded once per message into both formats, as a dict
keyed by format name, so each recipient only picks its string. What a member sends once
joined is parsed in rooms.core.commands. docs/protocol.md is the reference; nothing here
does I/O or touches Django.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import orjson

from rooms.core import errors
from rooms.core.errors import ClientError
from rooms.core.names import nickname_key, parse_nickname, parse_room

if TYPE_CHECKING:
    from rooms.core.commands import Moderate

TEXT = "text"
JSON = "json"
FORMATS = (TEXT, JSON)

Frames = dict[str, str]


@dataclass(frozen=True, slots=True)
class Handshake:
    """What a client asked for when it connected."""

    room: str
    nickname: str
    format: str
    history: int | None = None  # ?history=N: the last N messages before live ones
    since: int | None = None  # ?since=ID: every message after ID (reconnect recovery)


# Moderators' commands, as they are named on the wire (rooms.core.commands parses them).
KICK, BAN, MUTE, UNBAN, UNMUTE, DELETE = "kick", "ban", "mute", "unban", "unmute", "delete"


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


def moderated(room: str, command: "Moderate", target: str, until: int | None, fmt: str) -> str:
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
