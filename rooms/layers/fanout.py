"""Delivery by call: the channel-layer extension rooms' consumers are built on.

Channels' layers queue every group message for each member, and each member's task awaits
its queue: a task switch per member per message, most of the cost of a delivery. A layer
that lists FANOUT in its `extensions` (as Channels' layers list "groups" and "flush") lets a
member `attach` a receiver instead: a function the layer calls with each group message, in
order, and a control function for messages sent to the member's own channel. Delivering to
a room is then a loop of calls (`Members.deliver`, shared by every such layer), with no
queue and no task switch per member; members that did not attach are queued as before.
"""

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

logger = logging.getLogger(__name__)

FANOUT = "rooms.fanout"  # the extension name

Receiver = Callable[[dict], None]  # takes a message; must not block


class FanoutLayer(Protocol):
    """What a channel layer listing FANOUT in its extensions offers, besides Channels' API."""

    extensions: list[str]
    dropped: int  # messages dropped for a full queue, for /metrics

    def deaf_to(self, group: str) -> bool:
        """Whether the group's messages published now might not all reach this process's
        members (its subscriptions are being restored)."""

    def attach(self, channel: str, receiver: Receiver, control: Receiver) -> None:
        """Call `receiver` with the channel's group messages, `control` with its own."""

    async def detach(self, channel: str) -> None:
        """Forget the channel: its consumer has ended."""


class Members:
    """The receivers attached to one layer, and the one loop that delivers to them."""

    __slots__ = ("receivers", "controls")

    def __init__(self) -> None:
        self.receivers: dict[str, Receiver] = {}
        self.controls: dict[str, Receiver] = {}

    def attach(self, channel: str, receiver: Receiver, control: Receiver) -> None:
        self.receivers[channel] = receiver
        self.controls[channel] = control

    def forget(self, channel: str) -> None:
        self.receivers.pop(channel, None)
        self.controls.pop(channel, None)

    def clear(self) -> None:
        self.receivers.clear()
        self.controls.clear()

    def deliver(
        self, channels: Iterable[str], message: dict, queue: Callable[[str, dict], None]
    ) -> None:
        """Hand one group message to each of `channels`: by call to those attached, through
        `queue` to the others. A failing member costs no other its message."""
        receivers = self.receivers
        for channel in channels:
            receiver = receivers.get(channel)
            if receiver is None:
                queue(channel, message)
                continue
            try:
                receiver(message)
            except Exception:
                logger.exception("receiver failed on a group message")

    def control(self, channel: str, message: dict) -> bool:
        """Hand a message sent to `channel` to its control function, if it attached one."""
        control = self.controls.get(channel)
        if control is None:
            return False
        try:
            control(message)
        except Exception:
            logger.exception("control failed on a message")
        return True
