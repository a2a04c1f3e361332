"""Idle connections kept alive (rooms.server.keepalive) and application instances cleaned up
(rooms.server.instances), seen from a plain socket and from the server's bookkeeping."""

import asyncio
import os
import socket
import time

import pytest

from rooms.server.instances import Instances
from rooms.server.keepalive import sweep_slices
from tests.clients import raw_join

PING = b"\x89\x00"  # final ping, no payload


def masked(opcode: int, payload: bytes = b"") -> bytes:
    """A client's frame: final, masked, a payload under 126 bytes."""
    mask = os.urandom(4)
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + body


def next_frame(sock: socket.socket) -> bytes:
    """The next whole frame from the server (unmasked, payload under 126 bytes), or b""
    once the server has closed or dropped the connection."""
    try:
        head = sock.recv(2, socket.MSG_WAITALL)
    except ConnectionResetError:
        return b""
    if len(head) < 2:
        return b""
    length = head[1] & 0x7F
    assert length < 126
    return head + (sock.recv(length, socket.MSG_WAITALL) if length else b"")


def next_ping(sock: socket.socket) -> bytes:
    """Frames up to and including the next ping (or the end of the connection)."""
    while (frame := next_frame(sock)) not in (PING, b""):
        pass
    return frame


@pytest.mark.parametrize(
    ("interval", "timeout", "slices"),
    [(20, 30, 5), (120, 30, 7), (1, 1, 1), (3, 60, 1), (600, 600, 150), (20, 0, 5), (0, 0, 1)],
    ids=["defaults", "long-interval", "tests", "short-interval", "long-both", "no-timeout", "none"],
)
def test_a_sweep_is_spread_over_a_quarter_of_the_shorter_interval(interval, timeout, slices):
    assert sweep_slices(interval, timeout) == slices


def test_a_silent_client_is_pinged_stays_while_it_answers_and_is_dropped_when_it_stops(
    start_server,
):
    server = start_server("serve", PING_INTERVAL="1", PING_TIMEOUT="2")
    sock = raw_join(server.port, "/ws/chat/Room1/?nickname=Quiet")
    for _ in range(3):  # pinged after each second of silence, kept for each answer
        assert next_ping(sock) == PING
        sock.sendall(masked(0xA))
    assert next_ping(sock) == PING
    start = time.monotonic()  # not answered: dropped after the timeout, at the next sweep
    assert next_frame(sock) == b""
    assert 2 < time.monotonic() - start < 2 + 1 + 1.5
    sock.close()


def test_a_client_that_keeps_talking_is_never_pinged(start_server):
    server = start_server("serve", PING_INTERVAL="1", PING_TIMEOUT="2")
    sock = raw_join(server.port, "/ws/chat/Room1/?nickname=Talker")
    assert next_frame(sock)[2:] == b"Talker joined Room1"
    for n in range(8):  # 4 s, a message every half second
        sock.sendall(masked(0x1, f"line {n}".encode()))
        assert next_frame(sock)[2:] == f"Talker: line {n}".encode()
        time.sleep(0.5)
    sock.close()


class Client:
    """What Instances needs of a connection: somewhere to report its application's error."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def handle_exception(self, exception: BaseException) -> None:
        self.errors.append(exception)


async def started(connections: dict, instances: Instances, client: Client, body) -> asyncio.Task:
    task = asyncio.ensure_future(body())
    connections[client] = {"connected": time.time(), "application_instance": task}
    instances.started(client, task)
    return task


async def test_an_application_that_ends_after_its_client_left_is_forgotten_at_once():
    connections: dict = {}
    instances = Instances(connections, close_timeout=60, stop=lambda: None)
    client = Client()
    task = await started(connections, instances, client, lambda: asyncio.sleep(0.05))
    connections[client]["disconnected"] = time.time()
    instances.disconnected(client)
    await task
    await asyncio.sleep(0)  # its done callback
    assert client not in connections


async def test_an_application_still_running_a_close_timeout_after_its_client_left_is_cancelled():
    connections: dict = {}
    instances = Instances(connections, close_timeout=0.2, stop=lambda: None)
    client = Client()
    task = await started(connections, instances, client, lambda: asyncio.sleep(60))
    connections[client]["disconnected"] = time.time()
    instances.disconnected(client)
    instances.tick()
    assert not task.done()  # its time is not up yet
    await asyncio.sleep(0.25)
    instances.tick()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert client not in connections


async def test_an_application_that_fails_while_its_client_is_connected_reports_to_it():
    connections: dict = {}
    instances = Instances(connections, close_timeout=60, stop=lambda: None)
    client = Client()

    async def fail() -> None:
        raise ValueError("boom")

    task = await started(connections, instances, client, fail)
    with pytest.raises(ValueError):
        await task
    await asyncio.sleep(0)
    assert [str(error) for error in client.errors] == ["boom"]
    assert "application_instance" not in connections[client]  # still connected: kept
    connections[client]["disconnected"] = time.time()
    instances.disconnected(client)
    assert client not in connections
