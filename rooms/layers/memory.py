"""An in-process channel layer built for room fan-out.

Channels' InMemoryChannelLayer deep-copies a group message once per member, starts a
task per member, and scans every channel and group for expiry on every send and receive:
most of the cost of a delivery; and it drops a channel's queue whenever a receive empties
it, so the next message builds a new one. This subclass hands one shared message to every
member's queue directly (messages are never mutated after `group_send`), keeps a queue
until its reader is cancelled (consumers cancel it when they end), scans for expiry at most
once a second, and counts every message dropped on a full channel (logged at most once
a second, so that an overload does not also flood the log).

It offers delivery by call (rooms.layers.fanout).
"""

import asyncio
import logging
import time

from channels.layers import InMemoryChannelLayer

from rooms import internals
from rooms.layers.fanout import FANOUT, Members, Receiver

logger = logging.getLogger(__name__)

CLEAN_INTERVAL = 1.0  # seconds between expiry scans
DROP_LOG_INTERVAL = 1.0  # seconds between warnings about dropped messages


class FanoutInMemoryChannelLayer(InMemoryChannelLayer):
    """InMemoryChannelLayer with cheap group_send and delivery by call (a FanoutLayer); same
    API and semantics otherwise."""

    extensions = [*InMemoryChannelLayer.extensions, FANOUT]

    def __init__(self, **kwargs) -> None:
        internals.require("channels")
        super().__init__(**kwargs)
        self.dropped = 0
        self.members = Members()
        self._next_clean = 0.0
        self._next_drop_log = 0.0

    def deaf_to(self, group: str) -> bool:
        return False  # every member is in this process

    def attach(self, channel: str, receiver: Receiver, control: Receiver) -> None:
        """Call `receiver` with the channel's group messages as they are sent, and
        `control` with messages sent to the channel itself."""
        self.members.attach(channel, receiver, control)

    async def detach(self, channel: str) -> None:
        """Forget the channel's receivers and queue: its consumer has ended."""
        self.members.forget(channel)
        self.channels.pop(channel, None)

    async def flush(self) -> None:
        self.members.clear()
        await super().flush()

    async def send(self, channel: str, message: dict) -> None:
        if not self.members.control(channel, message):
            await super().send(channel, message)

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now >= self._next_clean:
            self._next_clean = now + CLEAN_INTERVAL
            super()._clean_expired()

    async def receive(self, channel: str) -> dict:
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        try:
            _, message = await queue.get()
        except asyncio.CancelledError:
            self.channels.pop(channel, None)
            raise
        return message

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        self.members.deliver(self.groups.get(group, ()), message, self._queue)

    def _queue(self, channel: str, message: dict) -> None:
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        try:
            queue.put_nowait((time.time() + self.expiry, message))
        except asyncio.QueueFull:
            self._drop()

    def _drop(self) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now >= self._next_drop_log:
            self._next_drop_log = now + DROP_LOG_INTERVAL
            logger.warning("channel full: %d group messages dropped so far", self.dropped)
