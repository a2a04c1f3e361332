"""Who may join a room, and with what rights: the rules every join runs after its handshake
is parsed (rooms.chat.membership), on top of the connection limits.

In order: credentials refused (4401); anonymous joins off (ALLOW_ANONYMOUS, 4401); a
registered user's name asked for anonymously (4409); a private room for a non-member (4403);
a ban in force, unless the user moderates the room (4403); the project's own rule, CAN_JOIN
(4403). A join passing them gets its rights: whether it moderates the room, and until when
it is muted.
"""

import time
from datetime import UTC, datetime
from functools import cache
from typing import NamedTuple

from asgiref.sync import iscoroutinefunction, sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils.module_loading import import_string

from rooms.access.directory import RoomRules, get_directory, user_subject
from rooms.core import errors, names
from rooms.core.protocol import Handshake
from rooms.models import Sanction


class Rights(NamedTuple):
    """What a member may do in its room."""

    user_id: int | None  # None: anonymous
    moderator: bool
    muted_until: float  # seconds since the epoch; 0: not muted


ANONYMOUS_RIGHTS = Rights(None, False, 0.0)


def when(timestamp: float) -> str:
    """A time as members are told it: ISO 8601, UTC, to the second."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def user_facts(user) -> tuple[bool, frozenset[int]]:
    """Whether the user moderates every room, and their groups' ids (reads the database)."""
    moderates = user.is_superuser or user.has_perm("rooms.moderate")
    return moderates, frozenset(user.groups.values_list("pk", flat=True))


async def _facts(user) -> tuple[bool, frozenset[int]]:
    # Read with the user, in the same thread hop, when the identity middleware found them.
    facts = getattr(user, "rooms_facts", None)
    return facts if facts is not None else await database_sync_to_async(user_facts)(user)


async def admit(user, handshake: Handshake) -> Rights:
    """The rights `user` joins `handshake.room` with, or the ClientError refusing it."""
    snapshot = await get_directory().current()
    room, key = handshake.room, names.nickname_key(handshake.nickname)
    rules = snapshot.rooms.get(room)
    if user.is_authenticated:
        moderates, groups = await _facts(user)
        moderator = moderates or (rules is not None and user.pk in rules.moderators)
        if rules is not None and rules.private and not _member(user, groups, rules, moderator):
            raise errors.room_forbidden()
        subjects = (key, user_subject(user.pk))
    else:
        if not settings.ROOMS_ALLOW_ANONYMOUS:
            raise errors.auth_required()
        if key in snapshot.reserved:
            raise errors.nickname_reserved(handshake.nickname)
        if rules is not None and rules.private:
            raise errors.room_forbidden()
        moderator, subjects = False, (key,)
    muted_until, now = 0.0, time.time()
    # Moderators are above bans and mutes (one given to their name before they moderated).
    restrictions = {} if moderator else snapshot.restrictions.get(room, {})
    for subject in subjects:
        for restriction in restrictions.get(subject, ()):
            if restriction.until <= now:
                continue
            if restriction.kind == Sanction.BAN:
                raise errors.banned(when(restriction.until))
            muted_until = max(muted_until, restriction.until)
    hook = _can_join()
    if hook is not None and not await hook(user, room):
        raise errors.room_forbidden()
    return Rights(user.pk if user.is_authenticated else None, moderator, muted_until)


def _member(user, groups: frozenset[int], rules: RoomRules, moderator: bool) -> bool:
    return moderator or user.is_staff or user.pk in rules.members or bool(groups & rules.groups)


@cache
def _can_join():
    """CAN_JOIN, the project's own rule `can_join(user, room) -> bool`, awaitable; None
    when unset. A synchronous one runs in a worker thread (it may read the database)."""
    if not settings.ROOMS_CAN_JOIN:
        return None
    hook = import_string(settings.ROOMS_CAN_JOIN)
    return hook if iscoroutinefunction(hook) else sync_to_async(hook)


async def may_read(user, room: str) -> bool:
    """Whether `user` may see `room` and its history through the API: every room but a
    private one, which only its members, moderators and staff may."""
    rules = (await get_directory().current()).rooms.get(room)
    if rules is None or not rules.private:
        return True
    if not user.is_authenticated:
        return False
    moderates, groups = await _facts(user)
    return _member(user, groups, rules, moderates or user.pk in rules.moderators)
