"""Ids strictly increasing for every client, and reconnect recovery with ?since=."""

import asyncio

import orjson
import pytest
from django.test import override_settings

from rooms.state.backends import get_sequence, get_writer
from tests.clients import join, recv_json
from tests.communicators import assert_recovered_with_gap, communicator


@pytest.fixture(params=["memory", "redis-pubsub"])
def servers(request, start_server):
    """Two addresses of one room: one process (in-memory layer), or two sharing Redis."""
    unlimited = {"RATE_LIMIT": "0"}  # these clients send faster than a person
    if request.param == "memory":
        server = start_server("daphne", **unlimited)
        return server, server
    env = {**request.getfixturevalue("redis_env"), **unlimited}
    return start_server("daphne", **env), start_server("daphne", **env)


def said(text: str) -> str:
    return orjson.dumps({"type": "message", "text": text}).decode()


async def joined(server, nickname: str, **query: str):
    """Join Room1 as a JSON client and read up to its own join."""
    ws = await join(server, "Room1", nickname, format="json", **query)
    while (event := await recv_json(ws))["type"] != "join" or event["nickname"] != nickname:
        pass
    return ws


async def messages(ws, count: int) -> list[dict]:
    """The next `count` message events, skipping joins and leaves."""
    found = []
    while len(found) < count:
        event = await recv_json(ws)
        if event["type"] == "message":
            found.append(event)
    return found


async def test_every_client_sees_ids_strictly_increasing_with_concurrent_senders(servers):
    a, b = servers
    clients = [await joined((a, b)[n % 2], f"u{n}") for n in range(4)]
    await asyncio.sleep(0.2)

    async def burst(n: int) -> None:
        for seq in range(25):
            await clients[n].send(said(f"{n}.{seq}"))

    await asyncio.gather(*(burst(n) for n in range(4)))
    streams = await asyncio.gather(*(messages(ws, 100) for ws in clients))
    for stream in streams:
        assert [event["id"] for event in stream] == list(range(1, 101))
        assert stream == streams[0]
    await asyncio.gather(*(ws.close() for ws in clients))


async def test_a_reconnecting_client_gets_what_it_missed_then_live_without_gap_or_duplicate(
    servers,
):
    a, b = servers
    sender = await joined(b, "Sender")
    reader = await joined(a, "Reader")
    for n in range(5):
        await sender.send(said(f"before {n}"))
    assert [event["id"] for event in await messages(reader, 5)] == [1, 2, 3, 4, 5]
    await reader.close()
    for n in range(10):
        await sender.send(said(f"while away {n}"))
    await messages(sender, 15)

    async def keep_talking() -> None:  # messages published during the catch-up
        for n in range(30):
            await sender.send(said(f"during {n}"))
            await asyncio.sleep(0.002)

    talking = asyncio.create_task(keep_talking())
    back = await join(a, "Room1", "Reader", format="json", since="5")
    welcome = await recv_json(back)
    assert welcome["type"] == "welcome" and 15 <= welcome["last_id"] <= 45, welcome
    events = []
    while not events or events[-1].get("id") != 45:
        events.append(await recv_json(back))
    await talking
    ids = [event["id"] for event in events if event["type"] == "message"]
    assert ids == list(range(6, 46))
    assert [event["text"] for event in events if event["type"] == "message"][:10] == [
        f"while away {n}" for n in range(10)
    ]
    own_join = [n for n, event in enumerate(events) if event["type"] == "join"]
    assert len(own_join) == 1 and events[own_join[0] - 1].get("id", 0) == welcome["last_id"]
    await back.close()
    await sender.close()


@override_settings(ROOMS_HISTORY_MAX=3)
async def test_recovery_beyond_the_replay_limit_is_told_the_gap():
    nick = await communicator("Room1", "Nick")
    await nick.receive_from()
    for n in range(6):
        await nick.send_to(f"m{n}")
        await nick.receive_from()
    await get_writer().flush()  # what the recent cache no longer holds is in the database
    late = await communicator("Room1", "Late", format="json", since="0")
    await assert_recovered_with_gap(late, "Room1", (1, 3), [4, 5, 6])
    await nick.disconnect()
    await late.disconnect()


@override_settings(ROOMS_REPLAY_MAX_BYTES=5_000)
async def test_recovery_beyond_the_replay_bytes_is_told_the_gap_for_the_oldest():
    nick = await communicator("Room1", "Nick")
    await nick.receive_from()
    for n in range(1, 9):
        await nick.send_to(f"m{n}" + "x" * 1_000)
        await nick.receive_from()
    await get_writer().flush()
    late = await communicator("Room1", "Late", format="json", since="0")
    await assert_recovered_with_gap(late, "Room1", (1, 4), [5, 6, 7, 8])  # 4 of ~1.1 KB fit
    back = await communicator("Room1", "Back", format="json", history="8")
    assert orjson.loads(await back.receive_from())["type"] == "welcome"
    assert [orjson.loads(await back.receive_from())["id"] for _ in range(4)] == [5, 6, 7, 8]
    assert orjson.loads(await back.receive_from())["type"] == "join"
    get_sequence.cache_clear()  # as in a new process: all from the database, same bound
    fresh = await communicator("Room1", "Fresh", format="json", since="0")
    await assert_recovered_with_gap(fresh, "Room1", (1, 4), [5, 6, 7, 8])
    for ws in (nick, late, back, fresh):
        await ws.disconnect()
