"""Who a WebSocket client is: an ASGI middleware that puts the user in the scope.

A `?token=` (rooms.access.tokens) names a user; else the Django session cookie a browser
sends does, as with Channels' AuthMiddlewareStack; else the client is anonymous. Only the
first two read the database: an anonymous client (no token, no session cookie) costs no
thread hop and no query. A token that is not valid leaves the client anonymous and puts
the error in the scope (AUTH_ERROR), for the consumer to answer with its frame and 4401.
"""

import logging
from types import SimpleNamespace
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError
from django.http.cookie import parse_cookie
from django.utils.module_loading import import_string

from rooms.access import rules, tokens
from rooms.core import errors
from rooms.core.errors import ClientError

logger = logging.getLogger(__name__)

AUTH_ERROR = "rooms.auth_error"  # scope key: the ClientError refusing the credentials
ANONYMOUS = AnonymousUser()


class IdentityMiddleware:
    """Resolve scope["user"] before the application runs: an anonymous client without a
    coroutine of its own (rooms.routing says why)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __call__(self, scope: dict, receive, send):
        # In place, as chatproject.asgi sets root_path: the scope is this connection's own.
        credentials = _credentials(scope)
        if credentials == (None, None):
            scope["user"] = ANONYMOUS
            return self.inner(scope, receive, send)
        return self._identified(scope, receive, send, *credentials)

    async def _identified(self, scope: dict, receive, send, token, session_key):
        scope["user"], error = await identify(token, session_key)
        if error is not None:
            scope[AUTH_ERROR] = error
        return await self.inner(scope, receive, send)


def _credentials(scope: dict) -> tuple[str | None, str | None]:
    """(the `?token=`, else the session cookie's key), either None when absent."""
    token = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    if token:
        return token[0], None
    return None, _session_cookie(scope)


async def identify(token: str | None, session_key: str | None) -> tuple:
    """(the user, or AnonymousUser; a ClientError if the credentials were refused or could
    not be checked)."""
    try:
        if token:
            return await database_sync_to_async(_with_facts)(tokens.user_for, token), None
        if session_key:
            return await database_sync_to_async(_with_facts)(_session_user, session_key), None
    except ClientError as error:
        return ANONYMOUS, error
    except DatabaseError:
        logger.warning("database unavailable: credentials not checked", exc_info=True)
        return ANONYMOUS, errors.service_unavailable(fatal=True)
    return ANONYMOUS, None


def _session_cookie(scope: dict) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            return parse_cookie(value.decode("latin-1")).get(settings.SESSION_COOKIE_NAME)
    return None


def _with_facts(find, credential: str):
    """The user `find` names, with what the join rules need of them read in the same worker
    thread hop (rooms.access.rules.user_facts): one hop and one database connection per
    signed-in join."""
    user = find(credential)
    if user.is_authenticated:
        user.rooms_facts = rules.user_facts(user)
    return user


def _session_user(session_key: str):
    store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    # django.contrib.auth.get_user checks the session's auth hash, as for a page request.
    return get_user(SimpleNamespace(session=store(session_key)))
