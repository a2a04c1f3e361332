"""Server-to-client WebSocket frames as bytes, built once per message.

A room message reaches every member as the same `str` object (the channel layer shares one
event among all local members). A server frame is never masked (RFC 6455 section 5.1), so
its bytes are the same for every recipient: `shared_text_frame` builds them once and both
servers (rooms.server.frames under Daphne, rooms.server.websocket under uvicorn) write the
cached bytes to each socket.
"""

import struct

CACHE_SIZE = 256  # distinct messages in flight at once, per process

_cache: dict[int, tuple[str, bytes]] = {}


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
