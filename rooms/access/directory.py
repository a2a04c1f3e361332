"""What every join checks, kept in each process's memory: registered users' names, the rooms
with rules (private, with moderators), and the bans and mutes in force.

Read from the database when a process first needs it and again every ACCESS_REFRESH
seconds, in a worker thread; changes made through rooms (a new user, a sanction, a room's
rules in the admin) also reach every process at once as a message on the channel layer's
ACCESS_GROUP (`announce_reload`, `announce_names`). A join of an anonymous client in a
public room then costs dictionary lookups, no database read. What a snapshot holds grows
with users and rules, which operators and moderators make, not with what clients send.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from functools import cache
from typing import NamedTuple

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from rooms.core import names
from rooms.layers.fanout import FANOUT
from rooms.models import Room, Sanction

logger = logging.getLogger(__name__)

ACCESS_GROUP = "rooms.access"  # no room's group: rooms.core.groups names those room.* / hash.*
ACCESS = "rooms.access"  # the message type


class RoomRules(NamedTuple):
    """Who may join a room with rules, and who moderates it."""

    private: bool
    members: frozenset[int]  # user ids
    groups: frozenset[int]  # group ids
    moderators: frozenset[int]  # user ids


class Restriction(NamedTuple):
    """A ban or a mute in force."""

    kind: str  # Sanction.BAN or Sanction.MUTE
    until: float  # seconds since the epoch


class Snapshot(NamedTuple):
    reserved: frozenset[str]  # nickname keys of registered, active users' display names
    rooms: dict[str, RoomRules]  # room name -> rules, for rooms that have any
    restrictions: dict[str, dict[str, list[Restriction]]]  # room -> key or "user:<id>" -> ...


EMPTY = Snapshot(frozenset(), {}, {})


def display_name(user) -> str:
    """The name a signed-in user joins under: DISPLAY_NAME's callable, or the username."""
    name = _display_name_hook()
    return name(user) if name is not None else user.get_username()


@cache
def _display_name_hook() -> Callable | None:
    return import_string(settings.ROOMS_DISPLAY_NAME) if settings.ROOMS_DISPLAY_NAME else None


def user_subject(user_id: int) -> str:
    """How a restriction on a registered user is keyed, beside nickname keys."""
    return f"user:{user_id}"


def _load() -> Snapshot:
    users = get_user_model()._default_manager.filter(is_active=True)
    reserved = frozenset(names.nickname_key(display_name(user)) for user in users.iterator())
    rooms = {}
    ruled = Room.objects.filter(Q(private=True) | Q(moderators__isnull=False)).distinct()
    for room in ruled.prefetch_related("members", "member_groups", "moderators"):
        rooms[room.name] = RoomRules(
            room.private,
            frozenset(user.pk for user in room.members.all()),
            frozenset(group.pk for group in room.member_groups.all()),
            frozenset(user.pk for user in room.moderators.all()),
        )
    restrictions: dict[str, dict[str, list[Restriction]]] = {}
    active = Sanction.objects.filter(kind__in=[Sanction.BAN, Sanction.MUTE]).filter(
        until__gt=timezone.now()
    )
    for name, kind, key, user_id, until in active.values_list(
        "room__name", "kind", "nickname_key", "user_id", "until"
    ):
        subjects = restrictions.setdefault(name, {})
        for subject in (key, user_subject(user_id) if user_id else None):
            if subject:
                subjects.setdefault(subject, []).append(Restriction(kind, until.timestamp()))
    return Snapshot(reserved, rooms, restrictions)


class Directory:
    """This process's snapshot, and its refresh."""

    def __init__(self, refresh: float) -> None:
        self._refresh = refresh
        self._snapshot = EMPTY
        self._loaded_at = float("-inf")
        self._loading: asyncio.Future | None = None
        self._wanted, self._have = 1, 0  # generations: asked for (announced), read
        self._listening = False

    async def current(self) -> Snapshot:
        """The snapshot: read again first when a change was announced since (or none was
        ever read); in the background once it is ACCESS_REFRESH old."""
        while self._have < self._wanted:
            await asyncio.shield(self._reload())
        if time.monotonic() - self._loaded_at > self._refresh:
            self._reload()
        if not self._listening:
            self._listening = True  # first: the joins arriving meanwhile must not listen too
            try:
                await self._listen()
            except BaseException:
                self._listening = False
                raise
        return self._snapshot

    def _reload(self) -> asyncio.Future:
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._read_snapshot(self._wanted))
            self._loading.add_done_callback(_retrieve)
        return self._loading

    async def _read_snapshot(self, generation: int) -> None:
        """Read and apply the snapshot. Applied here, before the read's future is done, not
        in a done callback: a join that found the future done before such a callback ran
        would await it again and again without ever yielding, and the process would hang
        (seen with thousands of joins at once)."""
        try:
            snapshot = await database_sync_to_async(_load)()
        finally:
            self._loading = None
        self._snapshot, self._loaded_at = snapshot, time.monotonic()
        self._have = max(self._have, generation)

    async def _listen(self) -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(ACCESS_GROUP, channel)
        if FANOUT in getattr(layer, "extensions", ()):
            layer.attach(channel, self._on_message, self._on_message)
        else:
            self._reader = asyncio.ensure_future(self._read(layer, channel))

    async def _read(self, layer, channel: str) -> None:
        while True:
            self._on_message(await layer.receive(channel))

    def _on_message(self, message: dict) -> None:
        if message.get("type") != ACCESS:
            return
        if message.get("reload"):
            self._wanted += 1  # the next join reads the change first
            return
        snapshot = self._snapshot
        reserved = (snapshot.reserved - set(message.get("release", ()))) | set(
            message.get("reserve", ())
        )
        self._snapshot = snapshot._replace(reserved=frozenset(reserved))

    def close(self) -> None:
        """Forget the snapshot (the process is stopping, or a test ends)."""
        self._snapshot, self._loaded_at, self._listening = EMPTY, float("-inf"), False
        self._wanted, self._have = self._have + 1, self._have


def _retrieve(reading: asyncio.Future) -> None:
    """A read that failed is logged (a join waiting for it gets the error too)."""
    if not reading.cancelled() and reading.exception() is not None:
        logger.warning("reading the access snapshot failed", exc_info=reading.exception())


async def announce(message: dict) -> None:
    """Send an access change to every process (this one included)."""
    await get_channel_layer().group_send(ACCESS_GROUP, {"type": ACCESS, **message})


def announce_reload() -> None:
    """From synchronous code (the admin, signals, moderation): every process reads its
    snapshot again, now."""
    _send({"reload": True})


def announce_names(reserve: Iterable[str] = (), release: Iterable[str] = ()) -> None:
    """From synchronous code: these nickname keys are now registered users', or no more."""
    _send({"reserve": list(reserve), "release": list(release)})


def _send(message: dict) -> None:
    # Best effort: every process also reads its snapshot again within ACCESS_REFRESH.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        try:
            async_to_sync(announce)(message)
        except Exception:
            logger.warning(
                "access change not announced; processes see it on refresh", exc_info=True
            )
    else:  # called from async code after all: schedule it
        asyncio.ensure_future(announce(message))


@cache
def get_directory() -> Directory:
    """This process's directory."""
    return Directory(settings.ROOMS_ACCESS_REFRESH)
