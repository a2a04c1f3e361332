"""WebSocket consumers: connection lifecycle and room events, nothing else.

Parsing and encoding live in rooms.protocol; group names in rooms.groups.
"""

import functools
import time

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from rooms import errors, protocol
from rooms.dispatch import dispatch_serially
from rooms.errors import ClientError
from rooms.groups import room_group
from rooms.protocol import Frames, Handshake
from rooms.sequence import get_sequence


def _now_ms() -> int:
    return int(time.time() * 1000)


class ChatConsumer(AsyncWebsocketConsumer):
    """One member of one room: join, relay each message to the room, leave."""

    handshake: Handshake | None = None
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
        self.handshake = handshake
        self.format = handshake.format
        self.group = room_group(handshake.room)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        if self.format == protocol.JSON:
            await self.send(protocol.welcome(handshake.room, handshake.nickname, _now_ms()))
        await self.broadcast(protocol.joined(handshake.room, handshake.nickname, _now_ms()))

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
        message_id = await get_sequence().next(self.group)
        await self.broadcast(protocol.message(room, nickname, text, message_id, _now_ms()))

    async def disconnect(self, code: int) -> None:
        if self.handshake is None:
            return
        await self.channel_layer.group_discard(self.group, self.channel_name)
        await self.broadcast(protocol.left(self.handshake.room, self.handshake.nickname, _now_ms()))

    async def broadcast(self, frames: Frames) -> None:
        """Send one event to every member of the room, this one included."""
        await self.channel_layer.group_send(self.group, {"type": "room.event", **frames})

    async def room_event(self, event: dict) -> None:
        await self.send(event[self.format])

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
