"""WebSocket consumers: connection lifecycle and room events, nothing else.

Parsing and encoding live in rooms.protocol; group names in rooms.groups.
"""

import functools
import logging
import time

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError

from rooms import errors, history, protocol
from rooms.dispatch import dispatch_serially
from rooms.errors import ClientError
from rooms.groups import room_group
from rooms.history import Pending, get_writer
from rooms.presence import get_presence
from rooms.protocol import Frames, Handshake
from rooms.sequence import get_sequence, room_event

logger = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


class ChatConsumer(AsyncWebsocketConsumer):
    """One member of one room: join, relay each message to the room, leave."""

    handshake: Handshake | None = None
    claimed: Handshake | None = None  # set once the nickname is this client's in its room
    format = protocol.TEXT

    async def __call__(self, scope, receive, send) -> None:
        # Channels' AsyncConsumer.__call__, with its per-message task and asyncio.wait
        # replaced by long-lived readers (rooms.dispatch).
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        try:
            await dispatch_serially([receive, self.channel_receive], self.dispatch)
        except StopConsumer:
            pass

    async def dispatch(self, message: dict) -> None:
        # Channels runs aclose_old_connections() in a worker thread before every handler,
        # a thread hop per delivered message. No handler here touches the database outside
        # database_sync_to_async, which already closes stale connections around each call.
        await getattr(self, get_handler_name(message))(message)

    async def connect(self) -> None:
        try:
            handshake = protocol.parse_handshake(
                self.scope["url_route"]["kwargs"]["room_name"], self.scope["query_string"]
            )
        except ClientError as error:
            await self.accept()
            await self.fail(error)
            return
        self.format = handshake.format
        self.group = room_group(handshake.room)
        try:
            await get_presence().claim(
                handshake.room, self.group, handshake.nickname, self.channel_name
            )
        except ClientError as error:
            await self.accept()
            await self.fail(error)
            return
        self.claimed = self.handshake = handshake
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        # Until this member's own join comes back through the layer, room events are
        # history: catch_up stands in for room_event, then replays up to the join's id.
        self.room_event = self.catch_up
        await get_sequence().publish_join(
            self.channel_layer,
            self.group,
            handshake.room,
            self.channel_name,
            room_event(**protocol.joined(handshake.room, handshake.nickname, _now_ms())),
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.handshake is None:
            return
        try:
            text = protocol.parse_message(
                text_data, bytes_data, self.format, settings.ROOMS_MAX_MESSAGE_LENGTH
            )
        except ClientError as error:
            await self.fail(error)
            return
        room, nickname = self.handshake.room, self.handshake.nickname
        if text is protocol.WHO:
            members = await get_presence().members(self.group)
            await self.send(protocol.members(room, members, self.format))
            return
        stamp = await get_sequence().publish(
            self.channel_layer, self.group, room, nickname, text, room_event()
        )
        get_writer().record(Pending(room, stamp.id, stamp.ts, nickname, text))

    async def disconnect(self, code: int) -> None:
        if self.claimed is None:
            return
        claimed = self.claimed
        await get_presence().release(claimed.room, self.group, claimed.nickname, self.channel_name)
        await self.channel_layer.group_discard(self.group, self.channel_name)
        await self.broadcast(protocol.left(self.handshake.room, self.handshake.nickname, _now_ms()))

    async def broadcast(self, frames: Frames) -> None:
        """Send one event to every member of the room, this one included."""
        await self.channel_layer.group_send(self.group, room_event(**frames))

    async def room_event(self, event: dict) -> None:
        await self.send(event[self.format])

    async def catch_up(self, event: dict) -> None:
        """Until this member's own join arrives, drop events (history has them); then
        welcome (JSON), replay history up to the join's id, and go live."""
        if event.get("joiner") != self.channel_name:
            return
        del self.room_event
        room, fmt = self.handshake.room, self.format
        try:
            if fmt == protocol.JSON:
                members = await get_presence().members(self.group)
                nickname = self.handshake.nickname
                await self.send(protocol.welcome(room, nickname, members, event["last"], _now_ms()))
            replay = await history.replay(self.handshake, self.group, event["last"])
        except DatabaseError:
            logger.warning("history unavailable: joined without it", exc_info=True)
        else:
            if replay.gap is not None:
                await self.send(protocol.gap(room, *replay.gap, fmt))
            for _, frame in replay.messages:
                await self.send(protocol.replayed(frame, fmt))
        await self.room_event(event)

    async def fail(self, error: ClientError) -> None:
        """Tell the client what went wrong; close when the error is fatal."""
        await self.send(protocol.error(error, self.format))
        if error.close_code is not None:
            await self.close(code=error.close_code, reason=error.code)


class NotFoundConsumer(AsyncWebsocketConsumer):
    """Any other WebSocket path: accept, explain, close with 4404."""

    async def connect(self) -> None:
        await self.accept()
        error = ClientError(
            errors.NOT_FOUND,
            "Connect to /ws/chat/<room>/?nickname=<nick>.",
            errors.WS_4404_NOT_FOUND,
        )
        await self.send(protocol.error(error, protocol.TEXT))
        await self.close(code=error.close_code, reason=error.code)
