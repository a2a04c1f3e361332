"""Signed, expiring tokens that identify a user to the chat without a browser session:
`manage.py issue_token`, then `?token=` on a WebSocket or `Authorization: Bearer` on the API.

Django's signing (HMAC-SHA256 under SECRET_KEY) rather than a JWT library: nothing to add,
nothing to configure, and only this server ever reads them. A token carries the user's id,
its expiry, and a stamp of the user's password hash, so changing the password (or making
the user inactive) revokes every token already issued. Tokens in a query string end up in
access logs: keep their lifetime short (TOKEN_TTL, 15 minutes by default).
"""

import time

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core import signing
from django.utils.crypto import constant_time_compare, salted_hmac

from rooms.core import errors

SALT = "rooms.access.tokens"


def _stamp(user: AbstractBaseUser) -> str:
    return salted_hmac(SALT, f"{user.pk}:{user.password}").hexdigest()[:20]


def issue(user: AbstractBaseUser, ttl: int) -> str:
    """A token for `user`, valid for `ttl` seconds."""
    payload = {"u": user.pk, "e": int(time.time()) + ttl, "h": _stamp(user)}
    return signing.dumps(payload, salt=SALT)


def user_for(token: str) -> AbstractBaseUser:
    """The active user a valid, unexpired token names; TOKEN_INVALID (close 4401)
    otherwise. Reads the database."""
    try:
        payload = signing.loads(token, salt=SALT)
        user_id, expires, stamp = payload["u"], payload["e"], payload["h"]
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise errors.token_invalid("This token is not valid.")
    if expires < time.time():
        raise errors.token_invalid("This token has expired; ask for a new one.")
    user = get_user_model()._default_manager.filter(pk=user_id, is_active=True).first()
    if user is None or not constant_time_compare(stamp, _stamp(user)):
        raise errors.token_invalid("This token is no longer valid.")
    return user
