"""The one error type a client ever sees, and the WebSocket close codes we use."""

# Close codes (RFC 6455 section 7.4; 4000-4999 are ours, mnemonic of HTTP statuses).
WS_1000_NORMAL = 1000  # the client or server ended the session normally
WS_1001_GOING_AWAY = 1001  # the server is shutting down
WS_4400_BAD_REQUEST = 4400  # the handshake asked for something invalid (nickname, room, format)
WS_4404_NOT_FOUND = 4404  # no WebSocket endpoint at that path
WS_4409_NICKNAME_TAKEN = 4409  # the nickname is held by another member of the room


class ClientError(Exception):
    """A client mistake, with a stable code; fatal when it carries a close code."""

    def __init__(self, code: str, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


# Stable error codes (docs/protocol.md lists each with its meaning).
NICKNAME_REQUIRED = "NICKNAME_REQUIRED"
NICKNAME_INVALID = "NICKNAME_INVALID"
ROOM_INVALID = "ROOM_INVALID"
FORMAT_INVALID = "FORMAT_INVALID"
NOT_FOUND = "NOT_FOUND"
BINARY_UNSUPPORTED = "BINARY_UNSUPPORTED"
MESSAGE_TOO_LONG = "MESSAGE_TOO_LONG"
JSON_INVALID = "JSON_INVALID"
COMMAND_INVALID = "COMMAND_INVALID"
COMMAND_UNKNOWN = "COMMAND_UNKNOWN"
NICKNAME_TAKEN = "NICKNAME_TAKEN"
HISTORY_INVALID = "HISTORY_INVALID"
SINCE_INVALID = "SINCE_INVALID"
ROOM_NOT_FOUND = "ROOM_NOT_FOUND"  # HTTP API only
PARAMETER_INVALID = "PARAMETER_INVALID"  # HTTP API only
