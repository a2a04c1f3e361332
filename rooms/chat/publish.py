"""Messages from the project's own code: `rooms.publish` for synchronous Django code (views,
signals, `transaction.on_commit`, Celery tasks, management commands) and `rooms.apublish`
for async code. A message takes a client's path (rooms.chat.stores.publish): the next
id in the room, the recent cache, every member, history.

Room state belongs to one event loop per server process, the one serving it (`serving`
remembers it). Called in a server process, the publish runs there, whatever thread or loop
it was called from. Called in a process serving nobody (a management command, a Celery
worker), it needs REDIS_URL, where ids and members are shared: the message is published
through Redis and written to the database before the call returns. With the in-memory
layer only the server process itself can publish: its rooms live in its memory.

The caller is trusted: any valid nickname may sign the message, a member's or a
registered user's included (docs/api.md, "Publishing from your code").
"""

import asyncio
from datetime import datetime
from typing import NamedTuple

from asgiref.sync import SyncToAsync, async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from rooms.chat import stores
from rooms.core import commands, errors, names, protocol
from rooms.core.errors import ClientError
from rooms.core.groups import room_group
from rooms.models import from_ms, to_ms
from rooms.state import clients
from rooms.state.backends import get_writer, in_redis
from rooms.state.storage import Pending, write

DEFAULT_NICKNAME = "server"


class PublishError(ClientError):
    """The message was refused, with the code a client would get: ROOM_INVALID,
    NICKNAME_REQUIRED, NICKNAME_INVALID, MESSAGE_TOO_LONG, TEXT_INVALID, or
    SERVICE_UNAVAILABLE (Redis or the history writer cannot take it now: retry)."""


class Published(NamedTuple):
    """A message as published: its id in the room and its server time."""

    id: int
    room: str
    nickname: str
    text: str
    sent: datetime  # UTC, to the millisecond, as on the wire

    def frame(self) -> str:
        """The message's JSON frame, as WebSocket clients and the read API see it."""
        return protocol.message(self.room, self.nickname, self.text, self.id, self.ts)[
            protocol.JSON
        ]

    @property
    def ts(self) -> int:
        """The server time in ms since the epoch, as on the wire."""
        return to_ms(self.sent)


_serving: list[asyncio.AbstractEventLoop] = []  # the loop this process serves on, once known


def serving(app):
    """The ASGI `app`, remembering the event loop it is served on: where room state lives.

    A plain function returning `app`'s coroutine, not a coroutine of its own awaiting it:
    that would be one more frame every open WebSocket keeps for its whole life."""

    def remembered(scope: dict, receive, send):
        loop = asyncio.get_running_loop()
        if not _serving or _serving[0] is not loop:
            _serving[:] = [loop]
        return app(scope, receive, send)

    remembered._asgi_single_callable = True  # asgiref would take a plain function for ASGI 2
    return remembered


def _home() -> asyncio.AbstractEventLoop | None:
    """The loop this process serves rooms on, if it is serving."""
    loop = _serving[0] if _serving else None
    return loop if loop is not None and loop.is_running() else None


def _checked(room: str, text: str, nickname: str) -> tuple[str, str, str]:
    """The room, text and nickname as the rules for clients take them; PublishError if not."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    try:
        return (
            names.parse_room(room),
            commands.parse_text(text, settings.ROOMS_MAX_MESSAGE_LENGTH),
            names.parse_nickname(nickname),
        )
    except ClientError as error:
        raise PublishError(error.code, error.message) from error


async def _stamped(room: str, text: str, nickname: str) -> tuple[Published, Pending]:
    try:
        stamp = await stores.publish(get_channel_layer(), room_group(room), room, nickname, text)
    except ClientError as error:
        raise PublishError(error.code, error.message) from error
    published = Published(stamp.id, room, nickname, text, from_ms(stamp.ts))
    return published, Pending(room, stamp.id, stamp.ts, nickname, text)


async def _served(room: str, text: str, nickname: str) -> Published:
    """Publish on the serving loop; the history writer keeps it, as a client's message.
    Shielded: a caller cancelled once the id is issued (an HTTP client that hung up) must
    not leave a message its members saw out of history."""
    return await asyncio.shield(_recorded(room, text, nickname))


async def _recorded(room: str, text: str, nickname: str) -> Published:
    published, pending = await _stamped(room, text, nickname)
    get_writer().record(pending)
    return published


async def _alone(room: str, text: str, nickname: str, own_loop: bool) -> Published:
    """Publish from a process serving nobody, through Redis, and write it at once: no
    writer task outlives the call. On a loop of its own, its Redis client goes with it."""
    if not in_redis():
        raise ImproperlyConfigured(
            "rooms.publish() outside a server process needs REDIS_URL: with the in-memory"
            " layer, rooms live in the server process's memory only."
        )
    try:
        published, pending = await _stamped(room, text, nickname)
    finally:
        if own_loop:
            await clients.close()
    try:
        written = await database_sync_to_async(write)([pending])
    except DatabaseError as error:  # delivered, not stored: say so, with the client's code
        raise PublishError(errors.SERVICE_UNAVAILABLE, f"Delivered but not stored: {error}")
    if written.set_aside:
        raise PublishError(errors.SERVICE_UNAVAILABLE, "Delivered but refused by the database.")
    return published


async def apublish(room: str, text: str, *, nickname: str = DEFAULT_NICKNAME) -> Published:
    """Publish `text` to `room` as `nickname` from async code; PublishError if refused."""
    room, text, nickname = _checked(room, text, nickname)
    home = _home()
    if home is None:
        return await _alone(room, text, nickname, own_loop=False)
    if home is asyncio.get_running_loop():
        return await _served(room, text, nickname)
    return await asyncio.wrap_future(
        asyncio.run_coroutine_threadsafe(_served(room, text, nickname), home)
    )


def publish(room: str, text: str, *, nickname: str = DEFAULT_NICKNAME) -> Published:
    """Publish `text` to `room` as `nickname` from synchronous code; PublishError if
    refused. Not from a running event loop, which it would block: await `apublish` there."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "rooms.publish() was called from a running event loop, which it would block:"
            " use `await rooms.apublish(...)` there."
        )
    room, text, nickname = _checked(room, text, nickname)
    home = _home()
    if home is None:
        return async_to_sync(_alone, force_new_loop=True)(room, text, nickname, own_loop=True)
    if getattr(SyncToAsync.threadlocal, "main_event_loop", None) is home:
        # A thread the serving loop waits on (a sync view, a signal in one, on_commit):
        # async_to_sync runs the publish there, and its database calls in this thread.
        return async_to_sync(_served)(room, text, nickname)
    return asyncio.run_coroutine_threadsafe(_served(room, text, nickname), home).result()
