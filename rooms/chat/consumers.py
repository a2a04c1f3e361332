"""WebSocket consumers: the glue between a client and its membership of a room.

Parsing and encoding live in rooms.core.protocol; joining, speaking and leaving in
rooms.chat.membership; this module only moves frames and events between them.
"""

import asyncio
import time

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from rooms.access.identity import ANONYMOUS, AUTH_ERROR
from rooms.chat import moderation
from rooms.chat.extensions import WRITE_SOON
from rooms.chat.feed import Feed
from rooms.chat.idle import IdleTimer
from rooms.chat.membership import Membership
from rooms.chat.outbox import Outbox
from rooms.chat.stores import REFUSE_JOIN
from rooms.core import commands, errors, logs, metrics, protocol
from rooms.core.errors import ClientError
from rooms.core.events import EVICT, MUTE
from rooms.core.limits import TokenBucket

JOIN_TIMEOUT = 10.0  # seconds for a joiner's own join event to come back through the layer


class ChatConsumer(AsyncWebsocketConsumer):
    """One member of one room: join, relay each message to the room, leave.

    Room events reach its Feed (rooms.chat.feed), called by the channel layer
    (rooms.layers.fanout) rather than awaited from a queue, and go to the client through the
    server's write_soon (rooms.server.frames) where it offers one: a delivery is then a
    function call, with no task switch.
    """

    # In slots: an open connection keeps its consumer for its whole life, and an instance
    # dict holding these cost 0.5 KB more.
    __slots__ = (
        "scope",
        "base_send",
        "channel_layer",
        "channel_name",
        "format",
        "feed",
        "member",
        "joined",
        "closing",
        "bucket",
        "idle",
        "closer",
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.format = protocol.TEXT
        self.member: Membership | None = None  # once the consumer has a channel
        self.joined = False  # the client is a member: its frames are messages
        self.closing = False
        self.bucket: TokenBucket | None = None
        self.idle: IdleTimer | None = None
        self.closer: asyncio.Task | None = None  # closes the client (a reference keeps it alive)

    async def __call__(self, scope, receive, send) -> None:
        # Channels' AsyncConsumer.__call__ runs a task and an asyncio.wait per message, over
        # the client and the channel; here the layer calls deliver() and this task reads
        # only the client.
        self.scope = scope
        self.format = protocol.requested_format(scope["query_string"])
        extension = scope.get("extensions", {}).get(WRITE_SOON)
        self.base_send, emit = (send, extension["write"]) if extension else Outbox.over(send)
        self.feed = Feed(emit, self.format)
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        try:
            self.member = await Membership.open(
                self.channel_layer, scope.get("client"), self.feed.deliver, self.control
            )
        except ClientError as error:  # answer the handshake rather than let Daphne reply 500
            await self.refuse(error)
            return
        self.channel_name = self.feed.channel = self.member.channel
        code = None  # the close code the leave logs when no disconnect message brought one
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        except Exception:
            code = errors.WS_1011_INTERNAL_ERROR  # Daphne logs it, then closes with 1011
            raise
        finally:
            # Also after a handler raised or the task was cancelled: the connection counts,
            # the nickname (held in Redis for as long as this process lives) and the leave
            # notice must not outlive the connection.
            try:
                await self.disconnect(code)
            finally:
                await self.member.close()

    async def dispatch(self, message: dict) -> None:
        # Channels runs aclose_old_connections() in a worker thread before every handler,
        # and again on disconnect: no handler here touches the database outside
        # database_sync_to_async, which already closes stale connections around each call.
        await getattr(self, get_handler_name(message))(message)

    async def websocket_disconnect(self, message: dict) -> None:
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def connect(self) -> None:
        room = self.scope["url_route"]["kwargs"]["room_name"]
        user, refused = self.scope.get("user", ANONYMOUS), self.scope.get(AUTH_ERROR)
        try:
            await self.member.join(room, self.scope["query_string"], user, refused)
        except ClientError as error:
            await self.refuse(error)
            return
        self.joined = True
        if settings.ROOMS_RATE_LIMIT:
            self.bucket = TokenBucket(settings.ROOMS_RATE_LIMIT, settings.ROOMS_RATE_BURST)
        await self.accept()
        # Room events before this member's own join are history, replayed up to the join's
        # id; the feed keeps those after it until then.
        try:
            await self.member.announce()
            with REFUSE_JOIN:
                join = await asyncio.wait_for(self.feed.own_join, JOIN_TIMEOUT)
        except ClientError as error:
            await self.fail(error)
            return
        for frame in await self.member.history(join["last"], self.format):
            await self.send(frame)
        if not self.closing:
            self.feed.go_live()
        if settings.ROOMS_IDLE_TIMEOUT:
            self.idle = IdleTimer(settings.ROOMS_IDLE_TIMEOUT, self.idled)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self.joined or self.closing:
            return
        now = time.monotonic()
        try:
            # Every frame costs a token, valid or not: each one costs the server work.
            if self.bucket is not None and not self.bucket.take(now):
                raise errors.rate_limited(settings.ROOMS_RATE_LIMIT)
            text = commands.parse_message(
                text_data, bytes_data, self.format, settings.ROOMS_MAX_MESSAGE_LENGTH
            )
            # Only a valid message or command keeps the client from IDLE_TIMEOUT: refused
            # frames would otherwise hold a connection open for ever at a frame per timeout.
            if self.idle is not None:
                self.idle.touch(now)
            if text is commands.WHO:
                members = await self.member.members()
                await self.send(protocol.members(self.member.handshake.room, members, self.format))
            elif isinstance(text, commands.Moderate):
                await self.send(await moderation.carry_out(self.member, text, self.format))
            else:
                await self.member.say(text)
        except ClientError as error:
            await self.fail(error)

    async def disconnect(self, code: int | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.closing = True
        self.feed.stop()
        await self.member.leave(code)

    def control(self, message: dict) -> None:
        """A message to this member alone (rooms.core.events): evict closes it with its
        error, mute sets until when its messages are refused."""
        if message["type"] == EVICT:
            self.close_for(ClientError(message["code"], message["message"], message["close"]))
        elif message["type"] == MUTE:
            self.member.mute(message["until"])

    def idled(self) -> None:
        """The client sent no valid message or command for IDLE_TIMEOUT seconds."""
        self.close_for(errors.idle_timeout(settings.ROOMS_IDLE_TIMEOUT))

    def close_for(self, error: ClientError) -> None:
        """Close the client with `error`, from outside its task (a timer, the layer)."""
        if not self.closing:
            self.closer = asyncio.ensure_future(self.fail(error))

    async def refuse(self, error: ClientError) -> None:
        """Answer a handshake that cannot join: accept, explain, close."""
        await self.accept()
        await self.fail(error)

    async def fail(self, error: ClientError) -> None:
        """Tell the client what went wrong; close when the error is fatal."""
        metrics.error(error.code)
        await self.send(protocol.error(error, self.format))
        if error.close_code is not None:
            # Room events may still arrive until the close completes; sending them on a
            # closing socket raises (autobahn), which would skip disconnect() and the leave.
            self.closing = True
            self.feed.stop()
            if self.member is not None:
                client = logs.address(self.scope.get("client"))  # who hit a per-address limit
                self.member.log("close", code=error.close_code, error=error.code, client=client)
            await self.close(code=error.close_code, reason=error.code)


class NotFoundConsumer(AsyncWebsocketConsumer):
    """Any other WebSocket path: accept, explain, close with 4404."""

    async def connect(self) -> None:
        await self.accept()
        error = errors.not_found()
        await self.send(protocol.error(error, protocol.TEXT))
        await self.close(code=error.close_code, reason=error.code)
