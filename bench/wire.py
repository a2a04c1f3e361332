"""Timestamped payloads and the two wire dialects, so every delivery yields a latency."""

from typing import Final

DIALECTS: Final = ("rooms", "tutorial")
PAYLOAD_SIZE: Final = 64
_MARK: Final = b"~"
_LEFT: Final = b" left the room"
_JOINED: Final = b" joined "


def make_payload(step: int, sender: int, seq: int, sent_ns: int) -> bytes:
    """Build a fixed-size message whose fields survive either dialect's framing."""
    head = b"~%d|%d|%d|%d|" % (step, sender, seq, sent_ns)
    return head.ljust(PAYLOAD_SIZE, b".")


def encode(dialect: str, payload: bytes) -> bytes:
    """Wrap a payload the way a client of that dialect sends chat text."""
    if dialect == "tutorial":
        return b'{"message": "' + payload + b'"}'
    return payload


def parse_stamp(data: bytes) -> tuple[int, int] | None:
    """Return (step, sent_ns) of a chat delivery, or None for any other frame."""
    start = data.find(_MARK)
    if start < 0:
        return None
    fields = data[start + 1 : start + 1 + PAYLOAD_SIZE].split(b"|", 4)
    if len(fields) < 5:
        return None
    return int(fields[0]), int(fields[3])


def is_leave_notice(data: bytes) -> bool:
    """Tell a rooms-dialect leave notice apart from other frames."""
    return data.endswith(_LEFT)


def is_join_notice(data: bytes) -> bool:
    """Tell a rooms-dialect join notice apart from other frames."""
    return _JOINED in data


def chat_url(port: int, room: str, nick: str) -> str:
    """URL both dialects accept; the tutorial simply ignores the nickname."""
    return f"ws://127.0.0.1:{port}/ws/chat/{room}/?nickname={nick}"
