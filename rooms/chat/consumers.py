"""WebSocket consumers: connection lifecycle and room events, nothing else.

Parsing and encoding live in rooms.core.protocol; group names in rooms.core.groups.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable
from functools import partial

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError

from rooms.chat.extensions import WRITE_SOON
from rooms.chat.outbox import Outbox
from rooms.core import errors, logs, metrics, protocol
from rooms.core.errors import ClientError
from rooms.core.events import EVICT, now_ms, room_event
from rooms.core.groups import room_group
from rooms.core.limits import TokenBucket, address_key, connections, joins
from rooms.core.protocol import Frames, Handshake
from rooms.state import history
from rooms.state.backends import get_presence, get_sequence, get_writer
from rooms.state.clients import BACKEND_ERRORS
from rooms.state.storage import Pending

logger = logging.getLogger(__name__)


JOIN_TIMEOUT = 10.0  # seconds for a joiner's own join event to come back through the layer


class ChatConsumer(AsyncWebsocketConsumer):
    """One member of one room: join, relay each message to the room, leave.

    Room events reach it through deliver(), called by the channel layer (rooms.layers.memory)
    rather than awaited from a queue, and go to the client through the server's
    write_soon (rooms.server.frames) where it offers one: a delivery is then a function call,
    with no task switch.
    """

    handshake: Handshake | None = None  # set once the client is a member of its room
    group: str | None = None  # set once counted against the connection limits
    address: str | None = None  # the client's address as counted (rooms.core.limits.address_key)
    # What leave() has to undo, each set as its step of the join begins and cleared by it.
    counted = False  # connection counts (rooms.core.limits.connections)
    claimed: Handshake | None = None  # the nickname, in presence
    in_group = False  # the channel in the room's group
    announced = False  # the join notice: a leave notice follows it
    in_sequence = False  # counted in by the room's sequence (publish_join)
    format = protocol.TEXT
    live = False  # room events go straight to the client, see deliver()
    closing = False
    early: list[dict] | None = None  # room events after this member's join, before live
    bucket: TokenBucket | None = None
    idle_timer: asyncio.TimerHandle | None = None
    closer: asyncio.Task | None = None  # closes an idle client (a reference keeps it alive)
    reader: asyncio.Task | None = None  # reads the channel, for layers without attach()

    async def __call__(self, scope, receive, send) -> None:
        # Channels' AsyncConsumer.__call__ runs a task and an asyncio.wait per message, over
        # the client and the channel; here the layer calls deliver() and this task reads
        # only the client.
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
        extension = scope.get("extensions", {}).get(WRITE_SOON)
        if extension:
            self.base_send, self.emit = send, extension["write"]
        else:
            outbox = Outbox(send)
            self.base_send, self.emit = outbox.send, outbox.write_soon
        self.own_join = asyncio.get_running_loop().create_future()
        self.listen()
        code = None  # the close code leave() logs when no disconnect message brought one
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
                await self.leave(code)
            finally:
                await self.stop_listening()

    async def dispatch(self, message: dict) -> None:
        # Channels runs aclose_old_connections() in a worker thread before every handler.
        # No handler here touches the database outside database_sync_to_async, which
        # already closes stale connections around each call.
        await getattr(self, get_handler_name(message))(message)

    async def websocket_disconnect(self, message: dict) -> None:
        # Channels' also closes stale database connections in a worker thread, a thread
        # hop per departure: nothing here holds one (see dispatch).
        await self.disconnect(message["code"])
        raise StopConsumer()

    def listen(self) -> None:
        """Have the layer call deliver() with each room event, or read the channel for it."""
        if hasattr(self.channel_layer, "attach"):
            self.channel_layer.attach(self.channel_name, self.deliver, self.control)
        else:
            self.reader = asyncio.create_task(self.read_channel())

    async def read_channel(self) -> None:
        try:
            while True:
                message = await self.channel_layer.receive(self.channel_name)
                if message["type"] == EVICT:
                    self.control(message)
                else:
                    self.deliver(message)
        except BACKEND_ERRORS:
            logger.warning("channel layer unavailable: closing", exc_info=True)
            await self.fail(errors.service_unavailable(fatal=True))

    async def stop_listening(self) -> None:
        if self.reader is not None:
            self.reader.cancel()  # a cancelled receive is how a layer forgets a channel
            await asyncio.gather(self.reader, return_exceptions=True)
            return
        try:
            await self.channel_layer.detach(self.channel_name)
        except BACKEND_ERRORS:
            logger.warning("channel layer unavailable: channel not unsubscribed", exc_info=True)

    async def connect(self) -> None:
        self.format = protocol.requested_format(self.scope["query_string"])
        address = address_key(self.scope.get("client"))
        try:
            # Every join costs its address a token, whether it succeeds or not.
            joins.spend(
                address, time.monotonic(), settings.ROOMS_JOIN_RATE, settings.ROOMS_JOIN_BURST
            )
            handshake = protocol.parse_handshake(
                self.scope["url_route"]["kwargs"]["room_name"], self.scope["query_string"]
            )
            group = room_group(handshake.room)
            connections.acquire(
                group,
                settings.ROOMS_MAX_CONNECTIONS,
                settings.ROOMS_MAX_ROOM_CONNECTIONS,
                address,
                settings.ROOMS_MAX_CONNECTIONS_PER_IP,
            )
        except ClientError as error:
            await self.refuse(error)
            return
        self.group, self.address, self.counted = group, address, True
        self.claimed = handshake  # before the claim: one cut short may still hold the name
        try:
            await get_presence().claim(handshake.room, group, handshake.nickname, self.channel_name)
        except ClientError as error:
            self.claimed = None  # another member's: nothing of ours to release
            await self.refuse(error)
            return
        except BACKEND_ERRORS:
            logger.warning("presence unavailable: join refused", exc_info=True)
            await self.refuse(errors.service_unavailable(fatal=True))
            return
        self.in_group = True
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
        # Room events before this member's own join are history; those after it wait in
        # `early` until catch_up has replayed history up to the join's id.
        self.announced = self.in_sequence = True
        try:
            await get_sequence().publish_join(
                self.channel_layer,
                group,
                handshake.room,
                self.channel_name,
                room_event(**protocol.joined(handshake.room, handshake.nickname, now_ms())),
            )
            join = await asyncio.wait_for(self.own_join, JOIN_TIMEOUT)
        except BACKEND_ERRORS:
            await self.fail(errors.service_unavailable(fatal=True))
            return
        self.log("join", client=logs.address(self.scope.get("client")))
        await self.catch_up(join)
        if settings.ROOMS_IDLE_TIMEOUT:
            self.last_message = time.monotonic()
            self.watch_idle()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.handshake is None or self.closing:
            return
        now = time.monotonic()
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
        # Only a valid message or command keeps the client from IDLE_TIMEOUT: refused frames
        # would otherwise hold a connection open for ever at a frame per timeout.
        self.last_message = now
        room, nickname = self.handshake.room, self.handshake.nickname
        try:
            # rooms.layers.redis_pubsub, resubscribing after an outage
            if getattr(self.channel_layer, "deaf", False):
                raise ConnectionError("channel layer subscriptions are being restored")
            if text is protocol.WHO:
                members = await get_presence().members(self.group)
                await self.send(protocol.members(room, members, self.format))
                return
            if get_writer().full:  # history can keep no more: refuse, never accept and drop
                metrics.history_refused()
                await self.fail(errors.service_unavailable(fatal=False))
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
        await self.leave(code)

    async def leave(self, code: int | None) -> None:
        """Undo the join in reverse: leave notice, group, nickname claim, connection counts.

        Runs on disconnect and again when the consumer stops (a handler raised, the task
        was cancelled): each step is undone at most once, one that fails does not skip
        the others, and a cancellation is re-raised once they have all run.
        """
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self.closing, self.live, self.early = True, False, None  # nothing more for the client
        # Each flag is cleared before anything is awaited: a second call finds nothing to do.
        steps: list[partial[Awaitable[None]]] = []
        if self.announced:
            self.announced = False
            self.log("leave", code=code)
            room, nickname = self.handshake.room, self.handshake.nickname
            steps.append(partial(self.broadcast, protocol.left(room, nickname, now_ms())))
        if self.in_group:
            self.in_group = False
            steps.append(partial(self.channel_layer.group_discard, self.group, self.channel_name))
        if self.claimed is not None:
            claimed, self.claimed = self.claimed, None
            release = get_presence().release
            steps.append(
                partial(release, claimed.room, self.group, claimed.nickname, self.channel_name)
            )
        counted, self.counted = self.counted, False
        in_sequence, self.in_sequence = self.in_sequence, False
        cancelled: asyncio.CancelledError | None = None
        try:
            for step in steps:
                try:
                    await step()
                except asyncio.CancelledError as error:
                    cancelled = error  # the other steps first
                except BACKEND_ERRORS:
                    logger.warning(
                        "channel layer unavailable: %s skipped on leaving",
                        step.func.__name__,
                        exc_info=True,
                    )
                except Exception:
                    logger.exception("leaving: %s failed", step.func.__name__)
        finally:
            if in_sequence:
                get_sequence().leave(self.group)
            if counted:
                connections.release(self.group, self.address)
        if cancelled is not None:
            raise cancelled

    async def broadcast(self, frames: Frames) -> None:
        """Send one event to every member of the room, this one included."""
        await self.channel_layer.group_send(self.group, room_event(**frames))

    def deliver(self, event: dict) -> None:
        """Take one room event from the layer, in room order, without blocking: write it
        (live), keep it (joining), or drop it (history has it, or the client is leaving)."""
        if self.live:
            self.emit(event[self.format])
            metrics.delivered(event["sent"])
        elif self.early is not None:
            self.early.append(event)
        elif event.get("joiner") == self.channel_name and not self.own_join.done():
            self.early = []
            self.own_join.set_result(event)

    def control(self, message: dict) -> None:
        """A message to this member alone: rooms.state.sequence.evict closes it with its error."""
        if message["type"] == EVICT and not self.closing:
            error = ClientError(message["code"], message["message"], message["close"])
            self.closer = asyncio.ensure_future(self.fail(error))

    async def catch_up(self, join: dict) -> None:
        """Welcome (JSON) and replay history up to the join's id; then write the join and
        the events kept since, and go live."""
        room, fmt = self.handshake.room, self.format
        try:
            if fmt == protocol.JSON:
                members = await get_presence().members(self.group)
                nickname = self.handshake.nickname
                await self.send(protocol.welcome(room, nickname, members, join["last"], now_ms()))
            replay = await history.replay(self.handshake, self.group, join["last"])
        except (*BACKEND_ERRORS, DatabaseError):
            logger.warning("history unavailable: joined without it", exc_info=True)
        else:
            if replay.gap is not None:
                await self.send(protocol.gap(room, *replay.gap, fmt))
            for _, frame in replay.messages:
                await self.send(protocol.replayed(frame, fmt))
        if self.closing:
            return
        early, self.early = self.early, None
        self.live = True
        for event in (join, *early):
            self.deliver(event)

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
            self.closing, self.live = True, False
            client = logs.address(self.scope.get("client"))  # who hit a per-address limit
            self.log("close", code=error.close_code, error=error.code, client=client)
            await self.close(code=error.close_code, reason=error.code)

    def watch_idle(self) -> None:
        """Close the connection once the client has sent no valid message or command for
        IDLE_TIMEOUT seconds."""
        # A timer to the deadline, re-armed from the last frame's time when it fires, costs
        # nothing per frame received, and less memory than a sleeping task per connection.
        timeout = settings.ROOMS_IDLE_TIMEOUT
        remaining = self.last_message + timeout - time.monotonic()
        if remaining > 0:
            self.idle_timer = asyncio.get_running_loop().call_later(remaining, self.watch_idle)
        else:
            self.idle_timer = None
            self.closer = asyncio.ensure_future(self.fail(errors.idle_timeout(timeout)))

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
