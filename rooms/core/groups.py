"""The only place a room name becomes a channel-layer group name.

Layers accept group names of `[a-zA-Z0-9_.-]`, shorter than 100 characters. Room names
made only of those characters (and short) keep a readable group name, `room.<name>`;
every other room is named by a hash of its UTF-8 bytes, `hash.<hex>`. The prefixes keep
the two kinds apart, so distinct rooms never share a group.
"""

import hashlib
import re

_READABLE = re.compile(r"[a-zA-Z0-9_.-]{1,80}")


def room_group(room: str) -> str:
    """Group name for a room: valid for every channel layer, injective in practice."""
    if _READABLE.fullmatch(room):
        return f"room.{room}"
    return "hash." + hashlib.sha256(room.encode()).hexdigest()
