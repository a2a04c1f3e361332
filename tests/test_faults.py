"""Faults: Redis goes away and comes back; peers die without closing.

The Redis here is a private redis-server this module starts on a free port, so that it
can be stopped and restarted without touching the shared one.
"""

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from rooms.core import errors
from tests.clients import (
    assert_silent,
    get_json,
    join,
    raw_join,
    read_until_closed,
    recv,
    recv_json,
    wait_until,
)
from tests.servers import free_port
from tests.test_history import stored as stored_messages

UNAVAILABLE = (
    "error SERVICE_UNAVAILABLE: The chat service is unavailable: "
    "your message was not delivered; send it again shortly."
)


class PrivateRedis:
    """A redis-server of this test's own, on a fixed port across restarts, no persistence."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = log_dir / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            if os.environ.get("CI"):
                pytest.fail("redis-server is required under CI (scripts/services.sh)")
            pytest.skip("redis-server is not installed")
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--logfile", str(self.log)],
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    yield redis
    redis.stop()


async def test_redis_outage_is_explained_and_the_server_recovers_by_itself(
    start_server, launcher, private_redis
):
    server = start_server(launcher, REDIS_URL=private_redis.url, REDIS_PREFIX="outage")
    nick = await join(server, "Room1", "Nick")
    assert await recv(nick) == "Nick joined Room1"
    alex = await join(server, "Room1", "Alex")
    assert await recv(nick) == await recv(alex) == "Alex joined Room1"
    await nick.send("before")
    assert await recv(nick) == await recv(alex) == "Nick: before"
    assert get_json(server, "/readyz")[0] == 200

    private_redis.stop()
    await nick.send("during")
    assert await recv(nick) == UNAVAILABLE  # told, and still connected
    await assert_silent(alex)
    late = await join(server, "Room1", "Late")
    assert await read_until_closed(late) == (
        errors.WS_4503_UNAVAILABLE,
        ["error SERVICE_UNAVAILABLE: The chat service is unavailable; try again shortly."],
    )
    assert get_json(server, "/healthz") == (200, {"status": "ok"})
    status, body = get_json(server, "/readyz")
    assert status == 503 and body["status"] == "unavailable"
    assert body["checks"]["channel_layer"] == "unavailable"
    assert body["checks"]["database"] == "ok"

    private_redis.start()  # same port, empty: no restart of the chat server
    deadline = time.monotonic() + 30
    attempt = 0
    while True:
        attempt += 1
        await nick.send(f"after{attempt}")
        frame = await recv(nick)
        if frame == f"Nick: after{attempt}":
            break
        assert frame == UNAVAILABLE
        assert time.monotonic() < deadline, "no recovery within 30 s"
        await asyncio.sleep(0.5)
    assert await recv(alex) == f"Nick: after{attempt}"  # nothing refused reached the room
    again = await join(server, "Room1", "Again")
    assert await recv(again) == "Again joined Room1"
    assert await recv(nick) == await recv(alex) == "Again joined Room1"
    assert get_json(server, "/readyz")[0] == 200
    for ws in (nick, alex, again):
        await ws.close()


async def test_dead_peer_is_removed_after_a_missed_ping_and_its_leave_announced(
    start_server, launcher
):
    server = start_server(launcher, PING_INTERVAL="1", PING_TIMEOUT="1")
    nick = await join(server, "Room1", "Nick")
    await recv(nick)
    ghost = raw_join(server.port, "/ws/chat/Room1/?nickname=Ghost")
    assert await recv(nick) == "Ghost joined Room1"
    # Ping after 1 s of silence, 1 s to answer, checked every 2 s: gone within ~5 s.
    assert await recv(nick, timeout=15) == "Ghost left the room"
    await assert_silent(nick, 3.5)  # Nick answers pings (websockets does) and stays
    await nick.send("still here")
    assert await recv(nick) == "Nick: still here"
    ghost.close()
    await nick.close()


def said(text: str) -> str:
    return orjson.dumps({"type": "message", "text": text}).decode()


async def next_of(ws, kind: str) -> dict:
    """The next event of type `kind`, skipping others (joins, leaves)."""
    while (event := await recv_json(ws))["type"] != kind:
        pass
    return event


async def say_until_delivered(ws, text: str, deadline: float) -> dict:
    """Send `text` until the server takes it (SERVICE_UNAVAILABLE while Redis comes back)."""
    while True:
        await ws.send(said(text))
        event = await recv_json(ws)
        while event["type"] not in ("message", "error"):
            event = await recv_json(ws)
        if event["type"] == "message":
            return event
        assert event["code"] == errors.SERVICE_UNAVAILABLE, event
        assert time.monotonic() < deadline, "Redis did not come back within the deadline"
        await asyncio.sleep(0.2)


async def join_as_second(server, room: str, nickname: str) -> tuple[int | None, list[str]]:
    """Join as a nickname someone else holds, retrying while Redis comes back; how it ends."""
    while True:
        ws = await join(server, room, nickname, format="json")
        code, frames = await read_until_closed(ws)
        if code != errors.WS_4503_UNAVAILABLE:
            return code, frames
        await asyncio.sleep(0.2)


async def test_redis_losing_its_memory_loses_no_id_no_message_no_member_and_no_name(
    start_server, launcher, private_redis, database_url
):
    env = {"REDIS_URL": private_redis.url, "REDIS_PREFIX": "loss", "PRESENCE_TTL": "3"}
    a = start_server(launcher, FLUSH_INTERVAL_MS="50", **env)
    b = start_server(launcher, FLUSH_INTERVAL_MS="50", **env)
    oa = await join(a, "Loss", "oa", format="json")
    await next_of(oa, "join")
    ob = await join(b, "Loss", "ob", format="json")
    await next_of(ob, "join")
    await next_of(oa, "join")
    seen = []
    for n, ws in enumerate((oa, ob, oa)):
        await ws.send(said(f"before{n}"))
        seen.append(await next_of(oa, "message"))
        await next_of(ob, "message")
    assert [event["id"] for event in seen] == [1, 2, 3]

    private_redis.stop()  # no persistence: it comes back empty
    private_redis.start()
    deadline = time.monotonic() + 30
    seen.append(await say_until_delivered(oa, "after0", deadline))
    assert (await next_of(ob, "message"))["text"] == "after0"
    seen.append(await say_until_delivered(ob, "after1", deadline))
    assert (await next_of(oa, "message"))["text"] == "after1"
    ids = [event["id"] for event in seen]
    assert ids == sorted(set(ids)) and ids[3] > 3, ids  # strictly increasing, no reuse

    # Within PRESENCE_TTL each process has claimed its members again.
    for server in (a, b):
        status, body = await wait_until(
            lambda server=server: get_json(server, "/api/rooms/Loss/"),
            lambda answer: answer[0] == 200 and answer[1]["members"] == ["oa", "ob"],
            timeout=3,
        )
        assert (status, body["members"]) == (200, ["oa", "ob"])
    await ob.send('{"type": "who"}')
    assert (await next_of(ob, "members"))["members"] == ["oa", "ob"]
    code, frames = await join_as_second(b, "Loss", "oa")
    assert code == errors.WS_4409_NICKNAME_TAKEN
    assert orjson.loads(frames[-1])["code"] == errors.NICKNAME_TAKEN

    # Lost again; a newcomer takes "ob" on the other process before ob's is restored: the
    # member who was there first keeps the name, the newcomer is closed with 4409.
    private_redis.stop()
    private_redis.start()
    code, frames = await join_as_second(a, "Loss", "ob")
    assert code == errors.WS_4409_NICKNAME_TAKEN
    assert orjson.loads(frames[-1])["code"] == errors.NICKNAME_TAKEN
    seen.append(await say_until_delivered(ob, "still ob", time.monotonic() + 30))
    assert (await next_of(oa, "message"))["text"] == "still ob"
    await oa.close()
    await ob.close()
    assert a.stop() == 0 and b.stop() == 0
    ids = [event["id"] for event in seen]
    stored = sorted(await asyncio.to_thread(stored_messages, database_url, "Loss"))
    assert stored == [(event["id"], event["nickname"], event["text"]) for event in seen], ids
