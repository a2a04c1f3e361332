"""What a member sends once joined, parsed: chat text, `/who`, and moderators' commands.

Pure functions beside rooms.core.protocol (which parses the handshake and encodes every
frame the server sends); docs/protocol.md is the reference.
"""

import re
from dataclasses import dataclass

import orjson

from rooms.core import errors
from rooms.core.errors import ClientError
from rooms.core.names import code_point
from rooms.core.protocol import BAN, DELETE, JSON, KICK, MUTE, UNBAN, UNMUTE

COMMAND_PREFIX = "/"  # text format: a frame starting with it is a command; "//" escapes it

# Control characters refused in message text: every Cc but tab and newline (PostgreSQL
# cannot store NUL; the others are terminal escapes and invisible), and the line and
# paragraph separators, line breaks that only some renderers honour: "\n" is the one.
_TEXT_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


class Who:
    """The command asking for the room's member list (`/who`, `{"type": "who"}`)."""

    __slots__ = ()


WHO = Who()

# Moderators' commands (docs/protocol.md, Moderation).
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
