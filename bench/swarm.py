"""Client-side state shared by all simulated users: room membership and delivery tallies."""

import asyncio
import logging
import time

from picows import WSFrame, WSListener, WSMsgType, WSTransport

from bench import wire

log = logging.getLogger(__name__)


class Swarm:
    """Counts what the simulated users receive during the current measurement step."""

    def __init__(self, rooms: int) -> None:
        self.members = [0] * rooms
        self.step = 0
        self.delivered = 0
        self.stale = 0
        self.other = 0
        self.joins = 0
        self.leaves = 0
        self.lost_connections = 0
        self.latencies: list[int] = []
        self.last_frame_ns = time.monotonic_ns()

    def start_step(self, step: int) -> None:
        """Zero the per-step tallies so late frames from earlier steps count as stale."""
        self.step = step
        self.delivered = self.stale = self.other = 0
        self.latencies = []

    def on_text(self, client: "ChatClient", data: bytes) -> None:
        """Classify one received text frame."""
        now = time.monotonic_ns()
        self.last_frame_ns = now
        stamp = wire.parse_stamp(data)
        if stamp is not None:
            if stamp[0] == self.step:
                self.delivered += 1
                self.latencies.append(now - stamp[1])
            else:
                self.stale += 1
        elif wire.is_leave_notice(data):
            client.leaves += 1
            self.leaves += 1
        elif wire.is_join_notice(data):
            client.joins += 1
            self.joins += 1
            if client.join_waiter is not None and not client.join_waiter.done():
                client.join_waiter.set_result(None)
        else:
            if self.other == 0:
                log.warning("unexpected frame: %r", data[:200])
            self.other += 1


class ChatClient(WSListener):
    """One simulated user; keeps its room's live member count accurate."""

    def __init__(self, swarm: Swarm, index: int, room: int) -> None:
        super().__init__()
        self.swarm = swarm
        self.index = index
        self.room = room
        self.transport: WSTransport | None = None
        self.alive = False
        self.leaving = False
        self.joins = 0
        self.leaves = 0
        self.join_waiter: asyncio.Future[None] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        """Count the user as a room member once the handshake completes."""
        self.transport = transport
        self.alive = True
        self.swarm.members[self.room] += 1

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Tally text frames and complete a server-initiated close."""
        if frame.msg_type == WSMsgType.TEXT:
            self.swarm.on_text(self, frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        """Drop the user from its room and count connections the server cut."""
        if not self.alive:
            return
        self.alive = False
        self.swarm.members[self.room] -= 1
        if not self.leaving:
            self.swarm.lost_connections += 1
