"""The one error type a client ever sees, and the WebSocket close codes we use."""

# Close codes (RFC 6455 section 7.4; 4000-4999 are ours, mnemonic of HTTP statuses).
WS_1000_NORMAL = 1000  # the client or server ended the session normally
WS_1001_GOING_AWAY = 1001  # the server is shutting down
WS_1011_INTERNAL_ERROR = 1011  # the server hit an unexpected error (Daphne closes with it)
WS_4400_BAD_REQUEST = 4400  # the handshake asked for something invalid (nickname, room, format)
WS_4401_UNAUTHORIZED = 4401  # no valid credentials: a token invalid or expired, or none
WS_4403_FORBIDDEN = 4403  # not allowed: a private room, a ban, a kick, another's name
WS_4404_NOT_FOUND = 4404  # no WebSocket endpoint at that path
WS_4408_IDLE_TIMEOUT = 4408  # no valid message or command from the client for IDLE_TIMEOUT s
WS_4409_NICKNAME_TAKEN = 4409  # the nickname is held by another member of the room
WS_4429_RATE_LIMITED = 4429  # too many frames, or joins or connections from one address
WS_4503_UNAVAILABLE = 4503  # room or server full, or the channel layer down: retry later
WS_4509_SLOW_CONSUMER = 4509  # the client fell SEND_BUFFER_LIMIT bytes behind reading


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
TEXT_INVALID = "TEXT_INVALID"  # a control character in a message's text
JSON_INVALID = "JSON_INVALID"
COMMAND_INVALID = "COMMAND_INVALID"
COMMAND_UNKNOWN = "COMMAND_UNKNOWN"
NICKNAME_TAKEN = "NICKNAME_TAKEN"
HISTORY_INVALID = "HISTORY_INVALID"
SINCE_INVALID = "SINCE_INVALID"
ROOM_NOT_FOUND = "ROOM_NOT_FOUND"  # HTTP API only
PARAMETER_INVALID = "PARAMETER_INVALID"  # HTTP API only
RATE_LIMITED = "RATE_LIMITED"
IDLE_TIMEOUT = "IDLE_TIMEOUT"
ROOM_FULL = "ROOM_FULL"
SERVER_FULL = "SERVER_FULL"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
SLOW_CONSUMER = "SLOW_CONSUMER"
TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
JOIN_RATE_LIMITED = "JOIN_RATE_LIMITED"
TOKEN_INVALID = "TOKEN_INVALID"  # a token that is forged, expired or revoked
AUTH_REQUIRED = "AUTH_REQUIRED"  # anonymous joins are off (ALLOW_ANONYMOUS=0)
NICKNAME_RESERVED = "NICKNAME_RESERVED"  # a registered user's name, asked for anonymously
NICKNAME_NOT_YOURS = "NICKNAME_NOT_YOURS"  # a signed-in user asked for another name
ROOM_FORBIDDEN = "ROOM_FORBIDDEN"  # a private room, or the project's can_join said no
BANNED = "BANNED"  # banned from the room until a time
KICKED = "KICKED"  # a moderator closed this member's connection
MUTED = "MUTED"  # muted in the room until a time: messages refused
FORBIDDEN = "FORBIDDEN"  # a moderator's command from someone who is not one


def rate_limited(rate: float) -> ClientError:
    """Fatal: the client sent frames faster than RATE_LIMIT a second, beyond its burst."""
    return ClientError(
        RATE_LIMITED,
        f"Too many frames: at most {rate:g} a second on average.",
        WS_4429_RATE_LIMITED,
    )


def idle_timeout(seconds: float) -> ClientError:
    """Fatal: the client sent no valid message or command for IDLE_TIMEOUT seconds."""
    return ClientError(
        IDLE_TIMEOUT,
        f"No valid message or command from you in {seconds:g} seconds.",
        WS_4408_IDLE_TIMEOUT,
    )


def service_unavailable(fatal: bool) -> ClientError:
    """The channel layer (Redis) is down: a join is refused, a message is not delivered."""
    if fatal:
        return ClientError(
            SERVICE_UNAVAILABLE,
            "The chat service is unavailable; try again shortly.",
            WS_4503_UNAVAILABLE,
        )
    return ClientError(
        SERVICE_UNAVAILABLE,
        "The chat service is unavailable: your message was not delivered; send it again shortly.",
    )


def nickname_taken(nickname: str) -> ClientError:
    """Fatal: another member of the room holds this nickname."""
    return ClientError(
        NICKNAME_TAKEN,
        f"The nickname {nickname!r} is taken in this room; choose another.",
        WS_4409_NICKNAME_TAKEN,
    )


def not_found() -> ClientError:
    """Fatal: there is no WebSocket endpoint at that path."""
    return ClientError(NOT_FOUND, "Connect to /ws/chat/<room>/?nickname=<nick>.", WS_4404_NOT_FOUND)


def server_full() -> ClientError:
    """Fatal: this process holds MAX_CONNECTIONS room connections."""
    return ClientError(
        SERVER_FULL, "The server is at its connection limit; try again later.", WS_4503_UNAVAILABLE
    )


def room_full(limit: int) -> ClientError:
    """Fatal: the room has MAX_ROOM_CONNECTIONS members on this process."""
    return ClientError(
        ROOM_FULL, f"This room is full ({limit} members); try again later.", WS_4503_UNAVAILABLE
    )


def too_many_connections(limit: int) -> ClientError:
    """Fatal: the client's address holds MAX_CONNECTIONS_PER_IP connections."""
    return ClientError(
        TOO_MANY_CONNECTIONS,
        f"Too many connections from your address (at most {limit}); close one or try again later.",
        WS_4429_RATE_LIMITED,
    )


def join_rate_limited(rate: float) -> ClientError:
    """Fatal: the client's address spent its join budget (JOIN_RATE, JOIN_BURST)."""
    return ClientError(
        JOIN_RATE_LIMITED,
        f"Too many joins from your address: at most {rate:g} a second on average; "
        "try again in a few seconds.",
        WS_4429_RATE_LIMITED,
    )


def posts_rate_limited(rate: float) -> ClientError:
    """HTTP API: the user posted faster than RATE_LIMIT messages a second, beyond RATE_BURST."""
    return ClientError(
        RATE_LIMITED, f"Too many messages: at most {rate:g} a second on average; try again shortly."
    )


def auth_required_to_post() -> ClientError:
    """HTTP API: posting takes a token, or a staff member's session."""
    return ClientError(
        AUTH_REQUIRED,
        "Send Authorization: Bearer <token> (manage.py issue_token), or sign in as staff.",
    )


def room_not_found(name: str) -> ClientError:
    """HTTP API: no room of that name has messages or members."""
    return ClientError(ROOM_NOT_FOUND, f"No room {name!r}: it has no messages or members.")


def token_invalid(message: str) -> ClientError:
    """Fatal: the token is forged, expired or revoked."""
    return ClientError(TOKEN_INVALID, message, WS_4401_UNAUTHORIZED)


def auth_required() -> ClientError:
    """Fatal: this server admits signed-in users only (ALLOW_ANONYMOUS=0)."""
    return ClientError(
        AUTH_REQUIRED, "Sign in, or connect with ?token=, to join.", WS_4401_UNAUTHORIZED
    )


def nickname_reserved(nickname: str) -> ClientError:
    """Fatal: an anonymous client asked for a registered user's name."""
    return ClientError(
        NICKNAME_RESERVED,
        f"The nickname {nickname!r} belongs to a registered user; choose another.",
        WS_4409_NICKNAME_TAKEN,
    )


def nickname_not_yours(username: str) -> ClientError:
    """Fatal: a signed-in user asked to join under another name."""
    return ClientError(
        NICKNAME_NOT_YOURS,
        f"You are signed in as {username!r} and join under that name.",
        WS_4403_FORBIDDEN,
    )


def room_forbidden() -> ClientError:
    """Fatal: the room is private (or the project's can_join refused), and this client may
    not join it."""
    return ClientError(ROOM_FORBIDDEN, "This room is private.", WS_4403_FORBIDDEN)


def banned(until: str, reason: str = "") -> ClientError:
    """Fatal: banned from this room until `until` (ISO 8601, UTC)."""
    why = f": {reason}" if reason else "."
    return ClientError(
        BANNED, f"You are banned from this room until {until}{why}", WS_4403_FORBIDDEN
    )


def kicked(reason: str) -> ClientError:
    """Fatal: a moderator removed this member from the room."""
    why = f": {reason}" if reason else "."
    return ClientError(KICKED, f"A moderator removed you from this room{why}", WS_4403_FORBIDDEN)


def muted(until: str) -> ClientError:
    """Not fatal: the member is muted in this room until `until`; the message was refused."""
    return ClientError(MUTED, f"You are muted in this room until {until}.")


def forbidden(what: str) -> ClientError:
    """Not fatal: a moderator's command from someone who is not one."""
    return ClientError(FORBIDDEN, f"Only moderators may {what}.")


def moderator_untouchable(nickname: str) -> ClientError:
    """Not fatal: moderators are not kicked, banned or muted, by another moderator or
    themselves."""
    return ClientError(FORBIDDEN, f"{nickname!r} moderates this room: they cannot be sanctioned.")


def too_many_user_connections(limit: int) -> ClientError:
    """Fatal: the signed-in user holds MAX_CONNECTIONS_PER_USER connections."""
    return ClientError(
        TOO_MANY_CONNECTIONS,
        f"Too many connections for your account (at most {limit}); close one first.",
        WS_4429_RATE_LIMITED,
    )
