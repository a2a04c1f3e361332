"""One client's membership of one room, from its join to its leave.

Joining runs, in order: the address's join budget, the handshake, the connection limits,
the nickname claim, the room's channel-layer group, and the join notice, stamped with the
room's last id. Leaving undoes in reverse each step that was begun, once, however the
connection ends: a step that fails is logged and the others still run, and a cancellation
is re-raised only once they all have. The store failing underneath (Redis unreachable)
becomes SERVICE_UNAVAILABLE (rooms.chat.stores, the one place that maps it).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable
from functools import partial

from django.conf import settings

from rooms.access import rules
from rooms.access.directory import display_name
from rooms.access.identity import ANONYMOUS
from rooms.access.rules import ANONYMOUS_RIGHTS, Rights
from rooms.chat.stores import REFUSE_JOIN, REFUSE_MESSAGE, STORE_ERRORS, publish, run_each
from rooms.core import errors, logs, protocol
from rooms.core.errors import ClientError
from rooms.core.events import EVENT, evict, now_ms, room_event
from rooms.core.groups import room_group
from rooms.core.limits import address_key, connections, joins
from rooms.core.protocol import Handshake
from rooms.layers.fanout import FANOUT, Receiver
from rooms.state import history
from rooms.state.backends import get_presence, get_sequence, get_users, get_writer
from rooms.state.clients import BACKEND_ERRORS
from rooms.state.sequence import announce
from rooms.state.storage import Pending

logger = logging.getLogger(__name__)


class Membership:
    """What one client holds in one room, and how it joins, speaks and leaves.

    It also owns the client's channel: room events go to `deliver`, messages sent to the
    channel itself (rooms.core.events.evict) to `control`, both called by the layer where it
    delivers by call (rooms.layers.fanout), else from a task reading the channel.
    """

    # Slots: one of these lives as long as each connection (BENCHMARKS.md, "Memory per
    # connection").
    __slots__ = (
        "layer", "channel", "client", "address", "handshake", "group", "reader",
        "rights", "counted", "user_counted", "claimed", "in_group", "announced",
    )  # fmt: skip

    def __init__(self, layer, channel: str, client: list | tuple | None) -> None:
        self.layer = layer
        self.channel = channel
        self.client = client
        self.address = address_key(client)
        self.handshake: Handshake | None = None  # set once the handshake is valid
        self.group: str | None = None
        self.reader: asyncio.Task | None = None  # reads the channel, for layers without FANOUT
        # What leave() undoes, each set as its step of the join begins and cleared by it: the
        # connection counts, the nickname in presence, the channel in the room's group, the
        # join notice (and the room's state the sequence holds for it).
        self.counted = self.claimed = self.in_group = self.announced = False
        self.user_counted = False  # the signed-in user's connections (rooms.state.users)
        self.rights: Rights = ANONYMOUS_RIGHTS  # what it may do there (rooms.access.rules)

    @classmethod
    async def open(
        cls, layer, client: list | tuple | None, deliver: Receiver, control: Receiver
    ) -> "Membership":
        """A new channel on `layer` for a client, its messages handed to the two functions;
        SERVICE_UNAVAILABLE if the layer cannot give one."""
        with REFUSE_JOIN:
            channel = await layer.new_channel()
        member = cls(layer, channel, client)
        if FANOUT in getattr(layer, "extensions", ()):
            layer.attach(channel, deliver, control)
        else:
            member.reader = asyncio.create_task(member._read(deliver, control))
        return member

    async def _read(self, deliver: Receiver, control: Receiver) -> None:
        try:
            while True:
                message = await self.layer.receive(self.channel)
                (deliver if message["type"] == EVENT else control)(message)
        except BACKEND_ERRORS:
            logger.warning("channel layer unavailable: closing", exc_info=True)
            control(evict(errors.service_unavailable(fatal=True)))

    async def close(self) -> None:
        """Give the channel up (call after leave)."""
        if self.reader is not None:
            self.reader.cancel()  # a cancelled receive is how a layer forgets a channel
            await asyncio.gather(self.reader, return_exceptions=True)
            return
        try:
            await self.layer.detach(self.channel)
        except BACKEND_ERRORS:
            logger.warning("channel layer unavailable: channel not unsubscribed", exc_info=True)

    async def join(self, room: str, query_string: bytes, user=ANONYMOUS, refused=None) -> Handshake:
        """Take a place in the room as `user` (rooms.access.identity; `refused`: the error its
        credentials got), or raise the (fatal) ClientError that refuses it."""
        # Every join costs its address a token, whether it succeeds or not.
        joins.spend(
            self.address, time.monotonic(), settings.ROOMS_JOIN_RATE, settings.ROOMS_JOIN_BURST
        )
        if refused is not None:
            raise refused
        signed_in = display_name(user) if user.is_authenticated else None
        handshake = protocol.parse_handshake(room, query_string, signed_in)
        with REFUSE_JOIN:
            self.rights = await rules.admit(user, handshake)
        group = room_group(handshake.room)
        connections.acquire(
            group,
            settings.ROOMS_MAX_CONNECTIONS,
            settings.ROOMS_MAX_ROOM_CONNECTIONS,
            self.address,
            settings.ROOMS_MAX_CONNECTIONS_PER_IP,
        )
        self.handshake, self.group, self.counted = handshake, group, True
        user_id, limit = self.rights.user_id, settings.ROOMS_MAX_CONNECTIONS_PER_USER
        if user_id is not None and limit:
            self.user_counted = True  # before the count: one cut short may still hold it
            with REFUSE_JOIN:
                await get_users().acquire(user_id, self.channel, limit)
        self.claimed = True  # before the claim: one cut short may still hold the name
        try:
            with REFUSE_JOIN:
                await get_presence().claim(
                    handshake.room, group, handshake.nickname, self.channel, user_id
                )
        except ClientError:
            self.claimed = False  # another member's: nothing of ours to release
            raise
        self.in_group = True
        with REFUSE_JOIN:
            await self.layer.group_add(group, self.channel)
        return handshake

    async def announce(self) -> None:
        """Publish the join notice, stamped with this channel and the room's last id."""
        room, nickname = self.handshake.room, self.handshake.nickname
        self.announced = True
        with REFUSE_JOIN:
            await get_sequence().publish_join(
                self.layer,
                self.group,
                room,
                self.channel,
                room_event(**protocol.joined(room, nickname, now_ms())),
            )
        self.log("join", client=logs.address(self.client))

    async def say(self, text: str) -> None:
        """Publish a chat message to the room and have it written to history."""
        room, nickname = self.handshake.room, self.handshake.nickname
        if self.rights.muted_until > time.time():
            raise errors.muted(rules.when(self.rights.muted_until))
        stamp = await publish(self.layer, self.group, room, nickname, text)
        get_writer().record(Pending(room, stamp.id, stamp.ts, nickname, text))

    def mute(self, until: float) -> None:
        """A moderator muted this member until `until` (0: unmuted), from any process. A
        shorter mute does not end a longer one in force: the directory keeps both."""
        muted_until = max(self.rights.muted_until, until) if until else 0.0
        self.rights = self.rights._replace(muted_until=muted_until)

    async def members(self) -> list[str]:
        """The room's nicknames, sorted."""
        with REFUSE_MESSAGE:
            return await get_presence().members(self.group)

    async def history(self, last_id: int, fmt: str) -> list[str]:
        """What a joiner receives before live events, in its format: the welcome (JSON),
        then what it asked to replay up to `last_id`; without it if history is unavailable."""
        room, nickname = self.handshake.room, self.handshake.nickname
        frames = []
        try:
            if fmt == protocol.JSON:
                members = await get_presence().members(self.group)
                welcome = protocol.welcome(
                    room, nickname, members, last_id, now_ms(), self.rights.moderator
                )
                frames.append(welcome)
            replay = await history.replay(self.handshake, self.group, last_id)
        except STORE_ERRORS:
            logger.warning("history unavailable: joined without it", exc_info=True)
            return frames
        if replay.gap is not None:
            frames.append(protocol.gap(room, *replay.gap, fmt))
        frames += [protocol.replayed(frame, fmt) for _, frame in replay.messages]
        return frames

    async def leave(self, code: int | None) -> None:
        """Undo the join in reverse: leave notice, group, nickname claim, connection counts.

        Runs on disconnect and again when the consumer stops (a handler raised, the task
        was cancelled): each step is undone at most once, one that fails does not skip
        the others, and a cancellation is re-raised once they have all run.
        """
        # Each flag is cleared before anything is awaited: a second call finds nothing to do.
        steps: list[partial[Awaitable[None]]] = []
        announced, self.announced = self.announced, False
        if announced:
            self.log("leave", code=code)
            room, nickname = self.handshake.room, self.handshake.nickname
            frames = protocol.left(room, nickname, now_ms())
            steps.append(partial(announce, self.layer, self.group, frames))
        if self.in_group:
            self.in_group = False
            steps.append(partial(self.layer.group_discard, self.group, self.channel))
        if self.claimed:
            self.claimed = False
            handshake, release = self.handshake, get_presence().release
            steps.append(
                partial(release, handshake.room, self.group, handshake.nickname, self.channel)
            )
        if self.user_counted:
            self.user_counted = False
            steps.append(partial(get_users().release, self.rights.user_id, self.channel))
        counted, self.counted = self.counted, False
        try:
            await run_each(steps)
        finally:
            if announced:
                get_sequence().leave(self.group)
            if counted:
                connections.release(self.group, self.address)

    def log(self, event: str, **fields: object) -> None:
        """One log line about this client; LOG_FORMAT=json keeps room and nickname as fields."""
        handshake = self.handshake
        room, nickname = (handshake.room, handshake.nickname) if handshake else ("", "")
        details = "".join(f" {key}={value}" for key, value in fields.items())
        logger.info(
            "%s room=%r nickname=%r%s",
            event,
            room,
            nickname,
            details,
            extra={"event": event, "room": room, "nickname": nickname, **fields},
        )
