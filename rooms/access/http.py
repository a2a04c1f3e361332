"""Who an HTTP API request comes from: `Authorization: Bearer <token>` (rooms.access.tokens),
else the Django session (a browser signed in to the site), else anonymous."""

from channels.db import database_sync_to_async
from django.http import HttpRequest

from rooms.access import tokens


async def request_user(request: HttpRequest):
    """The request's user; TOKEN_INVALID if it carries a token that is not valid."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":  # an empty token too: never the session instead
        return await database_sync_to_async(tokens.user_for)(token.strip())
    return await request.auser()


def by_token(request: HttpRequest) -> bool:
    """Whether the request authenticates by token (no CSRF check: no ambient credential)."""
    return request.headers.get("Authorization", "").partition(" ")[0].lower() == "bearer"
