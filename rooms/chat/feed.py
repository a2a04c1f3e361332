"""Room events on their way to one client, in room order.

A joiner must see the room's history up to its own join, then every event after it, once:
events published while its history is being read are kept (`early`) and written after it.
"""

import asyncio
from collections.abc import Callable

from rooms.core import metrics


class Feed:
    """One client's room events: kept while joining, written once live, dropped once closing.

    `deliver` is what the channel layer calls, once per event and member (rooms.layers.
    fanout): a dict lookup and a write, with no await and no task switch.
    """

    __slots__ = ("emit", "format", "channel", "live", "early", "own_join")

    def __init__(self, emit: Callable[[str], None], fmt: str) -> None:
        self.emit = emit  # writes a text frame to the client, without waiting
        self.format = fmt
        self.channel = ""  # the member's channel, whose join opens the feed
        self.live = False
        self.early: list[dict] | None = None  # events after this member's join, before live
        # The member's own join event, once it comes back through the layer; let go once
        # live (a connection would otherwise keep it, and its frames, for its whole life).
        self.own_join: asyncio.Future | None = asyncio.get_running_loop().create_future()

    def deliver(self, event: dict) -> None:
        """Take one room event from the layer, in room order, without blocking: write it
        (live), keep it (joining), or drop it (history has it, or the client is leaving)."""
        if self.live:
            self.emit(event[self.format])
            metrics.delivered(event["sent"])
        elif self.early is not None:
            self.early.append(event)
        elif (
            self.own_join is not None
            and event.get("joiner") == self.channel
            and not self.own_join.done()
        ):
            self.early = []
            self.own_join.set_result(event)

    def go_live(self) -> None:
        """History is written: write the member's own join and what came after it."""
        join, self.own_join = self.own_join.result(), None
        early, self.early = self.early, None
        self.live = True
        for event in (join, *early):
            self.deliver(event)

    def stop(self) -> None:
        """Nothing more for the client: it is closing."""
        self.live, self.early = False, None
