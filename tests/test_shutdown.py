"""Graceful shutdown of the launchers (tests.servers.LAUNCHERS) on SIGTERM."""

import asyncio
import signal
import sqlite3
import subprocess
import time

import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from rooms.core import errors
from rooms.server.serve import GOING_AWAY_REASON
from tests.clients import join, recv, recv_json, recv_n


async def _close_of(ws) -> tuple[int | None, str]:
    with pytest.raises(ConnectionClosed):
        while True:
            await recv(ws)
    return ws.close_code, ws.close_reason


async def test_sigterm_closes_every_client_with_1001_keeps_messages_and_exits(
    start_server, launcher, database_url
):
    server = start_server(launcher, SHUTDOWN_TIMEOUT="8", FLUSH_INTERVAL_MS="60000")
    text = await join(server, "Room1", "Nick")
    assert await recv(text) == "Nick joined Room1"
    js = await join(server, "Room1", "Alex", format="json")
    while (await recv_json(js))["type"] != "join":
        pass
    assert await recv(text) == "Alex joined Room1"
    other = await join(server, "Room2", "Solo")
    await recv(other)
    for n in range(5):  # accepted just before the signal; history writes them in batches
        await text.send(f"last words {n}")
    assert await recv_n(text, 5) == [f"Nick: last words {n}" for n in range(5)]

    start = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    closes = await asyncio.gather(*(_close_of(ws) for ws in (text, js, other)))
    assert closes == [(errors.WS_1001_GOING_AWAY, GOING_AWAY_REASON)] * 3
    try:
        code = server.process.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("the server did not exit within 10 s of SIGTERM")
    assert code == 0
    assert time.monotonic() - start < 10
    rows = sqlite3.connect(database_url.removeprefix("sqlite:///")).execute(
        "SELECT text FROM rooms_message ORDER BY seq"
    )
    assert [text for (text,) in rows] == [f"last words {n}" for n in range(5)]
    assert "connections drained" in server.log()
    with pytest.raises(OSError):
        await join(server, "Room1", "Late")


async def test_json_client_sees_the_going_away_close_after_its_last_event(start_server, launcher):
    server = start_server(launcher)
    js = await join(server, "Room1", "Alex", format="json")
    frames = [await recv_json(js) for _ in range(2)]
    assert [frame["type"] for frame in frames] == ["welcome", "join"]
    await js.send(orjson.dumps({"type": "message", "text": "bye"}).decode())
    assert (await recv_json(js))["text"] == "bye"
    server.process.send_signal(signal.SIGTERM)
    assert await _close_of(js) == (errors.WS_1001_GOING_AWAY, GOING_AWAY_REASON)
    assert server.process.wait(10) == 0
