"""Server-to-client WebSocket frames as bytes, built once per message, written once per turn.

A room message reaches every member as the same `str` object (the channel layer shares one
event among all local members). A server frame is never masked (RFC 6455 section 5.1), so
its bytes are the same for every recipient: `shared_text_frame` builds them once and both
servers (rooms.server.frames under Daphne, rooms.server.websocket under uvicorn) write the
cached bytes to each socket.

`write_soon` is the scope extension rooms.chat.extensions.WRITE_SOON of both: a text queued
on a connection goes out with every other text queued on it in the same event-loop turn,
in one write at the end of the turn.
"""

import asyncio
import struct
from typing import Protocol

CACHE_SIZE = 256  # distinct messages in flight at once, per process

_cache: dict[int, tuple[str, bytes]] = {}


class Corkable(Protocol):
    corked: list[str] | None  # texts queued in this turn, None when nothing waits

    def uncork(self) -> None: ...


_corked: list[Corkable] = []  # connections holding texts until the turn ends


def text_frame(text: str) -> bytes:
    """One final, unmasked, uncompressed text frame carrying `text`."""
    payload = text.encode()
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


def shared_text_frame(text: str) -> bytes:
    """`text_frame(text)`, built once for every send of this very `str` object."""
    entry = _cache.get(id(text))
    if entry is not None and entry[0] is text:
        return entry[1]
    frame = text_frame(text)
    if len(_cache) >= CACHE_SIZE:
        del _cache[next(iter(_cache))]  # the oldest entry
    _cache[id(text)] = (text, frame)  # holding `text` keeps its id from being reused
    return frame


def write_soon(connection: Corkable, text: str) -> None:
    """Queue `text` on `connection`; its `uncork()` writes the turn's texts at its end."""
    if connection.corked is not None:
        connection.corked.append(text)
        return
    connection.corked = [text]
    if not _corked:
        asyncio.get_running_loop().call_soon(_uncork_all)
    _corked.append(connection)


def _uncork_all() -> None:
    connections = _corked[:]
    _corked.clear()
    for connection in connections:
        connection.uncork()
