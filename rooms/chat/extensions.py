"""ASGI scope extensions that rooms' own server (rooms.server.serve) offers its consumers.

Kept apart from rooms.server.frames, which imports Daphne and Twisted: consumers also run under
servers that must not import them.
"""

# {"write": write_soon}: write_soon(text) queues a text message to the client without
# awaiting; the texts queued in one event-loop turn go out in one write (rooms.server.frames).
WRITE_SOON = "rooms.write_soon"
