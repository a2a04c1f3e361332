"""Several server processes on one port (python -m rooms.server.workers), sharing rooms
through Redis."""

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.clients import join, recv
from tests.processes import gone_or_zombie
from tests.servers import BASE_ENV, ROOT
from tests.test_history import wait_stored

# The local address is the servers' (127.0.0.1): a client elsewhere on the machine may use
# the same port number as its own end of a connection from another loopback address.
_SS_LINE = re.compile(r"\s127\.0\.0\.1:(\d+)\s+\S+:(\d+)\s+users:\(\(\"[^\"]+\",pid=(\d+)")


def serving_pids(port: int) -> dict[int, int]:
    """Client port -> pid of the server process holding that connection (from `ss`)."""
    out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True)
    owners = {}
    for line in out.stdout.splitlines():
        match = _SS_LINE.search(line)
        if match and int(match[1]) == port:
            owners[int(match[2])] = int(match[3])
    return owners


async def drain(client) -> None:
    while True:
        try:
            await recv(client, timeout=0.3)
        except TimeoutError:
            return


@pytest.mark.redis
async def test_two_workers_share_one_port_and_its_rooms(start_server, redis_env):
    server = start_server("workers:2", **redis_env)
    clients = [await join(server, "Shared", f"u{n}") for n in range(16)]
    await asyncio.gather(*(drain(client) for client in clients))

    owners = serving_pids(server.port)
    ports = [client.transport.get_extra_info("sockname")[1] for client in clients]
    assert len({owners[port] for port in ports}) == 2, "connections all went to one worker"

    await clients[0].send("hello")
    for client in clients:
        assert await recv(client) == "u0: hello"
    await asyncio.gather(*(client.close() for client in clients))


@pytest.mark.redis
async def test_stopping_the_supervisor_stops_every_worker(start_server, redis_env):
    server = start_server("workers:2", **redis_env)
    clients = [await join(server, "Room1", f"u{n}") for n in range(8)]
    owners = serving_pids(server.port)
    workers = {owners[client.transport.get_extra_info("sockname")[1]] for client in clients}
    assert server.stop() == 0
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()]  # noqa: ASYNC240
    assert not alive, f"workers {alive} outlived the supervisor"
    for client in clients:
        await client.close()


async def test_workers_whose_supervisor_is_killed_shut_down_and_say_goodbye(start_server):
    server = start_server("workers:1")
    nick = await join(server, "Room1", "Nick")
    assert await recv(nick) == "Nick joined Room1"
    worker = serving_pids(server.port)[nick.transport.get_extra_info("sockname")[1]]
    server.kill()  # SIGKILL: the supervisor cannot pass anything on
    with pytest.raises(ConnectionClosed) as closed:
        await recv(nick, timeout=15)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    for _ in range(100):
        if gone_or_zombie(worker):
            break
        await asyncio.sleep(0.1)
    assert gone_or_zombie(worker), "the worker outlived its supervisor"


def test_more_than_one_worker_without_redis_is_refused():
    env = {**os.environ, **BASE_ENV}
    env.pop("REDIS_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "rooms.server.workers", "--workers", "2", "--port", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode != 0
    assert "needs REDIS_URL" in result.stderr


async def test_the_default_single_worker_serves_in_memory_and_closes_with_1001_on_sigterm(
    start_server,
):
    server = start_server("workers:1")
    nick = await join(server, "Room1", "Nick")
    assert await recv(nick) == "Nick joined Room1"
    await nick.send("hello")
    assert await recv(nick) == "Nick: hello"
    assert server.stop() == 0
    with pytest.raises(ConnectionClosed):
        await recv(nick)
    assert nick.close_code == 1001


@pytest.mark.redis
async def test_two_workers_write_history_to_one_sqlite_file_without_lock_errors(
    start_server, redis_env, database_url
):
    # Each worker writes a batch every 5 ms: their transactions overlap all the time.
    server = start_server("workers:2", **redis_env, FLUSH_INTERVAL_MS="5", RATE_LIMIT="0")
    rooms = [f"Busy{n}" for n in range(4)]
    clients = [await join(server, room, f"u{n}") for room in rooms for n in range(4)]
    await asyncio.gather(*(drain(client) for client in clients))
    await asyncio.gather(*(client.send(f"m{seq}") for seq in range(25) for client in clients))
    for room in rooms:
        assert len(await asyncio.to_thread(wait_stored, database_url, room, 100)) == 100
    assert "failed; retrying" not in server.log()
    await asyncio.gather(*(client.close() for client in clients))
