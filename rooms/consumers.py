"""WebSocket consumers: connection lifecycle and room events, nothing else.

Parsing and encoding live in rooms.protocol; group names in rooms.groups.
"""

import asyncio
import functools
import logging
import time

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError

from rooms import errors, history, metrics, protocol
from rooms.dispatch import dispatch_serially
from rooms.errors import BACKEND_ERRORS, ClientError
from rooms.extensions import SEND_MANY
from rooms.groups import room_group
from rooms.history import Pending, get_writer
from rooms.limits import TokenBucket, connections
from rooms.presence import get_presence
from rooms.protocol import Frames, Handshake
from rooms.sequence import get_sequence, now_ms, room_event

logger = logging.getLogger(__name__)


class ChatConsumer(AsyncWebsocketConsumer):
    """One member of one room: join, relay each message to the room, leave."""

    handshake: Handshake | None = None  # set once the client is a member of its room
    claimed: Handshake | None = None  # set once the nickname is this client's in its room
    group: str | None = None  # set once counted against the connection limits
    format = protocol.TEXT
    closing = False
    bucket: TokenBucket | None = None
    idle_watch: asyncio.Task | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.outbox: list[str] = []  # room events not yet written, see flush()

    async def __call__(self, scope, receive, send) -> None:
        # Channels' AsyncConsumer.__call__, with its per-message task and asyncio.wait
        # replaced by long-lived readers (rooms.dispatch).
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        try:
            self.channel_name = await self.channel_layer.new_channel()
        except BACKEND_ERRORS:
            # Redis is down: answer the handshake rather than let Daphne reply HTTP 500.
            logger.warning("channel layer unavailable: handshake refused", exc_info=True)
            error = errors.service_unavailable(fatal=True)
            metrics.error(error.code)
            await send({"type": "websocket.accept"})
            fmt = protocol.requested_format(scope["query_string"])
            await send({"type": "websocket.send", "text": protocol.error(error, fmt)})
            await send({"type": "websocket.close", "code": error.close_code})
            return
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        try:
            await dispatch_serially([receive, self.channel_receive], self.dispatch, self.flush)
        except StopConsumer:
            pass

    async def dispatch(self, message: dict) -> None:
        # Channels runs aclose_old_connections() in a worker thread before every handler,
        # a thread hop per delivered message. No handler here touches the database outside
        # database_sync_to_async, which already closes stale connections around each call.
        await getattr(self, get_handler_name(message))(message)

    async def connect(self) -> None:
        self.format = protocol.requested_format(self.scope["query_string"])
        try:
            handshake = protocol.parse_handshake(
                self.scope["url_route"]["kwargs"]["room_name"], self.scope["query_string"]
            )
            group = room_group(handshake.room)
            connections.acquire(
                group, settings.ROOMS_MAX_CONNECTIONS, settings.ROOMS_MAX_ROOM_CONNECTIONS
            )
        except ClientError as error:
            await self.refuse(error)
            return
        self.group = group
        try:
            await get_presence().claim(handshake.room, group, handshake.nickname, self.channel_name)
        except ClientError as error:
            await self.refuse(error)
            return
        except BACKEND_ERRORS:
            logger.warning("presence unavailable: join refused", exc_info=True)
            await self.refuse(errors.service_unavailable(fatal=True))
            return
        self.claimed = handshake
        try:
            await self.channel_layer.group_add(group, self.channel_name)
        except BACKEND_ERRORS:
            logger.warning("channel layer unavailable: join refused", exc_info=True)
            await self.refuse(errors.service_unavailable(fatal=True))
            return
        self.handshake = handshake
        if settings.ROOMS_RATE_LIMIT:
            self.bucket = TokenBucket(settings.ROOMS_RATE_LIMIT, settings.ROOMS_RATE_BURST)
        await self.accept()
        # Until this member's own join comes back through the layer, room events are
        # history: catch_up stands in for room_event, then replays up to the join's id.
        self.room_event = self.catch_up
        try:
            await get_sequence().publish_join(
                self.channel_layer,
                group,
                handshake.room,
                self.channel_name,
                room_event(**protocol.joined(handshake.room, handshake.nickname, now_ms())),
            )
        except BACKEND_ERRORS:
            await self.fail(errors.service_unavailable(fatal=True))
            return
        self.log("join")
        if settings.ROOMS_IDLE_TIMEOUT:
            self.last_frame = time.monotonic()
            self.idle_watch = asyncio.create_task(self.watch_idle(settings.ROOMS_IDLE_TIMEOUT))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.handshake is None or self.closing:
            return
        now = self.last_frame = time.monotonic()
        # Every frame costs a token, valid or not: each one costs the server work.
        if self.bucket is not None and not self.bucket.take(now):
            await self.fail(errors.rate_limited(settings.ROOMS_RATE_LIMIT))
            return
        try:
            text = protocol.parse_message(
                text_data, bytes_data, self.format, settings.ROOMS_MAX_MESSAGE_LENGTH
            )
        except ClientError as error:
            await self.fail(error)
            return
        room, nickname = self.handshake.room, self.handshake.nickname
        try:
            if getattr(self.channel_layer, "deaf", False):  # rooms.redis_layer, resubscribing
                raise ConnectionError("channel layer subscriptions are being restored")
            if text is protocol.WHO:
                members = await get_presence().members(self.group)
                await self.send(protocol.members(room, members, self.format))
                return
            stamp = await get_sequence().publish(
                self.channel_layer, self.group, room, nickname, text, room_event()
            )
        except BACKEND_ERRORS:
            logger.warning("channel layer unavailable: message not delivered", exc_info=True)
            await self.fail(errors.service_unavailable(fatal=False))
            return
        get_writer().record(Pending(room, stamp.id, stamp.ts, nickname, text))
        metrics.received()

    async def disconnect(self, code: int) -> None:
        if self.idle_watch is not None:
            self.idle_watch.cancel()
        if self.group is None:
            return
        connections.release(self.group)
        try:
            if self.claimed is not None:
                claimed = self.claimed
                await get_presence().release(
                    claimed.room, self.group, claimed.nickname, self.channel_name
                )
            await self.channel_layer.group_discard(self.group, self.channel_name)
            if self.handshake is not None:
                self.log("leave", code=code)
                await self.broadcast(
                    protocol.left(self.handshake.room, self.handshake.nickname, now_ms())
                )
        except BACKEND_ERRORS:
            logger.warning("channel layer unavailable: leave not announced", exc_info=True)

    async def broadcast(self, frames: Frames) -> None:
        """Send one event to every member of the room, this one included."""
        await self.channel_layer.group_send(self.group, room_event(**frames))

    async def room_event(self, event: dict) -> None:
        # Gathered, then written by flush() once no message is waiting: one write per burst.
        self.outbox.append(event[self.format])
        metrics.delivered(event["sent"])

    async def flush(self) -> None:
        """Write the room events gathered since the last flush, in one message if the
        server takes several at once (rooms.extensions.SEND_MANY), else one by one."""
        if not self.outbox:
            return
        texts, self.outbox = self.outbox, []
        if SEND_MANY in self.scope.get("extensions", ()):
            await self.base_send({"type": "websocket.send", "texts": texts})
        else:
            for text in texts:
                await self.base_send({"type": "websocket.send", "text": text})

    async def send(self, text_data=None, bytes_data=None, close=False) -> None:
        await self.flush()  # room events gathered before this frame go out first
        await super().send(text_data, bytes_data, close)

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
                await self.send(protocol.welcome(room, nickname, members, event["last"], now_ms()))
            replay = await history.replay(self.handshake, self.group, event["last"])
        except (*BACKEND_ERRORS, DatabaseError):
            logger.warning("history unavailable: joined without it", exc_info=True)
        else:
            if replay.gap is not None:
                await self.send(protocol.gap(room, *replay.gap, fmt))
            for _, frame in replay.messages:
                await self.send(protocol.replayed(frame, fmt))
        await self.room_event(event)

    async def refuse(self, error: ClientError) -> None:
        """Answer a handshake that cannot join: accept, explain, close."""
        await self.accept()
        await self.fail(error)

    async def fail(self, error: ClientError) -> None:
        """Tell the client what went wrong; close when the error is fatal."""
        metrics.error(error.code)
        await self.send(protocol.error(error, self.format))
        if error.close_code is not None:
            self.closing = True
            # Room events may still arrive until the close completes; sending them on a
            # closing socket raises (autobahn), which would skip disconnect() and the leave.
            self.room_event = self.drop_event
            self.log("close", code=error.close_code, error=error.code)
            await self.close(code=error.close_code, reason=error.code)

    async def drop_event(self, event: dict) -> None:
        """room_event for a client being closed: nothing more is sent to it."""

    async def watch_idle(self, timeout: float) -> None:
        """Close the connection once the client has sent nothing for `timeout` seconds."""
        # Sleeping to the deadline and re-reading it costs nothing per frame received;
        # an Event would have to be set, or a timer rescheduled, on every frame.
        while (remaining := self.last_frame + timeout - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)
        await self.fail(errors.idle_timeout(timeout))

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
