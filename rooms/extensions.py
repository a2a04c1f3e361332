"""ASGI scope extensions that rooms' own server (rooms.serve) offers its consumers.

Kept apart from rooms.frames, which imports Daphne and Twisted: consumers also run under
servers that must not import them.
"""

# websocket.send may carry "texts", a list of text messages written at once (rooms.frames).
SEND_MANY = "rooms.send_many"
