"""The messages rooms puts on the channel layer, as plain dicts: room events (a frame for
each wire format, built once, with what the layer and the metrics need) and the control
messages one member's channel may receive."""

import time

from rooms.core.errors import ClientError

EVENT = "room.event"  # a room event, for every member: join, message, leave
EVICT = "room.evict"  # to one member's channel: send it the error it carries, then close
MUTE = "room.mute"  # to one member's channel: its messages are refused until a time (or no more)


def room_event(**fields: object) -> dict:
    """A room event for the channel layer: its type, publish time (rooms.core.metrics),
    and its fields (the frames of rooms.core.protocol, an id, the joiner's channel)."""
    return {"type": EVENT, "sent": time.time(), **fields}


def evict(error: ClientError) -> dict:
    """A message for one member's channel: send it `error`, then close it."""
    return {"type": EVICT, "code": error.code, "message": error.message, "close": error.close_code}


def mute(until: float) -> dict:
    """A message for one member's channel: refuse its messages until `until` (seconds since
    the epoch; 0: no more)."""
    return {"type": MUTE, "until": until}


def now_ms() -> int:
    """Server time in ms since the epoch, as on the wire."""
    return int(time.time() * 1000)
