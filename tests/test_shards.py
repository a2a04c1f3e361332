"""Rooms spread over several Redis shards (a comma-separated REDIS_URL), each room's state and
events on its own shard, shared by two server processes."""

import asyncio
import time
from collections import Counter
from functools import partial

import pytest

from rooms.core.groups import room_group
from rooms.layers.redis_pubsub import ResilientRedisPubSubChannelLayer
from rooms.state.shards import jump_hash, shard_of
from tests.clients import get_json, join, recv, recv_json, wait_until
from tests.test_presence import api, assert_refused_as_taken
from tests.test_recovery import messages, said

pytestmark = pytest.mark.redis


def room_on(shard: int, shards: int = 2, stem: str = "Room") -> str:
    """The first room named `<stem><n>` that lives on `shard`."""
    return next(
        f"{stem}{n}" for n in range(1000) if shard_of(room_group(f"{stem}{n}"), shards) == shard
    )


async def joined(server, room: str, nickname: str, **query: str):
    """A JSON client in `room`, read up to its own join."""
    ws = await join(server, room, nickname, format="json", **query)
    while (event := await recv_json(ws))["type"] != "join" or event["nickname"] != nickname:
        pass
    return ws


async def next_of(ws, *types: str) -> dict:
    """The next event of one of `types`, skipping others."""
    while (event := await recv_json(ws))["type"] not in types:
        pass
    return event


@pytest.mark.parametrize("shards", [2, 3, 4, 7])
def test_rooms_spread_evenly_over_the_shards(shards):
    counts = Counter(shard_of(room_group(f"room-{n}"), shards) for n in range(20_000))
    assert set(counts) == set(range(shards))
    assert all(abs(count - 20_000 / shards) < 0.1 * 20_000 / shards for count in counts.values())


@pytest.mark.parametrize("shards", [1, 2, 3, 8])
def test_a_new_shard_takes_only_the_rooms_that_move_to_it(shards):
    names = [room_group(f"room-{n}") for n in range(20_000)]
    moved = [name for name in names if shard_of(name, shards + 1) != shard_of(name, shards)]
    assert all(shard_of(name, shards + 1) == shards for name in moved)
    assert abs(len(moved) / len(names) - 1 / (shards + 1)) < 0.02


@pytest.mark.parametrize(
    ("key", "buckets", "bucket"),
    [(0, 1, 0), (0, 10, 0), (1, 2, 0), (2**64 - 1, 1, 0)],
    ids=["zero-one", "zero-ten", "one-two", "max-one"],
)
def test_jump_hash_answers_as_the_published_algorithm(key, buckets, bucket):
    assert jump_hash(key, buckets) == bucket


async def test_the_layer_subscribes_a_rooms_events_on_the_rooms_shard():
    hosts = [f"redis://127.0.0.1:{port}/0" for port in (1, 2, 3)]
    layer = ResilientRedisPubSubChannelLayer(hosts=hosts, prefix="p")._get_layer()
    for room in ("Lobby", "Room1", "Élan", "x" * 90):
        group = room_group(room)
        shard = layer._get_shard(layer._get_group_channel_name(group))
        assert layer._shards.index(shard) == shard_of(group, 3)


async def bursts_in_one_order(servers, rooms: list[str]) -> tuple[dict, dict]:
    """Four members per room, on both servers in turn, each sending 25 messages at once:
    every member of a room receives the same 100, ids 1 to 100. Returns the clients and
    each room's stream, for the caller's checks of where the room lives."""
    clients = {
        room: [await joined(servers[n % 2], room, f"u{n}") for n in range(4)] for room in rooms
    }
    await asyncio.sleep(0.2)

    async def burst(room: str, n: int) -> None:
        for seq in range(25):
            await clients[room][n].send(said(f"{n}.{seq}"))

    await asyncio.gather(*(burst(room, n) for room in rooms for n in range(4)))
    streams = {}
    for room in rooms:
        received = await asyncio.gather(*(messages(ws, 100) for ws in clients[room]))
        assert [event["id"] for event in received[0]] == list(range(1, 101))
        assert all(stream == received[0] for stream in received)
        streams[room] = received[0]
    return clients, streams


async def one_nickname_across(a, b, room: str):
    """Nick on `a`, Alex on `b`: a look-alike of Nick is refused on `b`, /who lists both,
    Nick's leave reaches Alex. Returns Alex's client."""
    nick = await join(a, room, "Nick", format="json")
    assert (await recv_json(nick))["members"] == ["Nick"]
    alex = await join(b, room, "Alex")
    assert await recv(alex) == f"Alex joined {room}"
    await assert_refused_as_taken(await join(b, room, "nick"), "nick")
    await alex.send("/who")
    assert await recv(alex) == f"Members of {room} (2): Alex, Nick"
    await nick.close()
    assert await recv(alex) == "Nick left the room"
    return alex


async def recovers_with_since(a, b, room: str) -> None:
    """A reader on `a` leaves; coming back on `b` with ?since= it gets exactly what it missed."""
    sender = await joined(b, room, "Sender")
    reader = await joined(a, room, "Reader")
    for n in range(3):
        await sender.send(said(f"before {n}"))
    assert [event["id"] for event in await messages(reader, 3)] == [1, 2, 3]
    await reader.close()
    for n in range(4):
        await sender.send(said(f"while away {n}"))
    await messages(sender, 7)
    back = await join(b, room, "Back", format="json", since="3")
    assert (await recv_json(back))["last_id"] == 7
    missed = await messages(back, 4)
    assert [(event["id"], event["text"]) for event in missed] == [
        (4 + n, f"while away {n}") for n in range(4)
    ]
    await back.close()
    await sender.close()


@pytest.fixture
def two_servers(start_server, shards_env):
    env = {**shards_env, "RATE_LIMIT": "0", "PRESENCE_TTL": "1.5"}
    return start_server("serve", **env), start_server("serve", **env)


def keys_of(server) -> set[str]:
    with server.client() as client:
        return {key.decode() for key in client.keys("shards:*")}


async def test_each_room_keeps_one_order_across_processes_on_its_own_shard(
    two_servers, redis_shards
):
    rooms = [room_on(0), room_on(1)]
    clients, streams = await bursts_in_one_order(two_servers, rooms)
    for room in rooms:
        assert {event["room"] for event in streams[room]} == {room}
    for shard, room in enumerate(rooms):  # the room's keys on its shard, none on the other
        own, other = redis_shards[shard], redis_shards[1 - shard]
        assert f"shards:seq:{{{room_group(room)}}}" in keys_of(own)
        assert f"shards:members:{room_group(room)}" in keys_of(own)
        assert not any(room_group(room) in key for key in keys_of(other))
    for ws in (ws for room in rooms for ws in clients[room]):
        await ws.close()


async def test_nicknames_are_unique_and_members_listed_across_processes_on_each_shard(
    two_servers,
):
    a, b = two_servers
    for room in (room_on(0), room_on(1)):
        alex = await one_nickname_across(a, b, room)
        members = await wait_until(
            partial(lambda room: api(a, f"/api/rooms/{room}/")["members"], room), ["Alex"].__eq__
        )
        assert members == ["Alex"]  # the name is released after the leave notice
        again = await join(b, room, "nick")
        assert await recv(again) == f"nick joined {room}"
        await again.close()
        await alex.close()


async def test_a_reconnecting_client_recovers_with_since_on_the_other_process(two_servers):
    for room in (room_on(0), room_on(1)):
        await recovers_with_since(*two_servers, room)


async def test_a_stopped_shard_stops_only_its_rooms_and_they_recover_by_themselves(
    two_servers, redis_shards
):
    a, b = two_servers
    calm, stormy = room_on(0), room_on(1)
    speakers = {room: await joined(a, room, "Speaker") for room in (calm, stormy)}
    hearers = {room: await joined(b, room, "Hearer") for room in (calm, stormy)}
    for room in (calm, stormy):
        await speakers[room].send(said("before"))
        assert [event["id"] for event in await messages(hearers[room], 1)] == [1]

    redis_shards[1].stop()
    await speakers[stormy].send(said("during"))
    refused = await next_of(speakers[stormy], "error")
    assert (refused["type"], refused["code"]) == ("error", "SERVICE_UNAVAILABLE")
    assert get_json(a, "/readyz")[0] == get_json(b, "/readyz")[0] == 200  # one shard answers
    for n in range(5):  # the other shard's room goes on, on both processes
        await speakers[calm].send(said(f"during {n}"))
    assert [event["text"] for event in await messages(hearers[calm], 5)] == [
        f"during {n}" for n in range(5)
    ]
    for n in range(8):  # each with a channel of its own: none may land on the stopped shard
        newcomer = await joined((a, b)[n % 2], calm, f"Newcomer{n}")
        await newcomer.close()

    redis_shards[1].start()  # same port, empty
    deadline = time.monotonic() + 30
    attempt = 0
    while True:  # the stormy room recovers with no restart of any server
        attempt += 1
        await speakers[stormy].send(said(f"after {attempt}"))
        event = await next_of(speakers[stormy], "message", "error")
        if event["type"] == "message":
            break
        assert event["code"] == "SERVICE_UNAVAILABLE"
        assert time.monotonic() < deadline, "no recovery within 30 s"
        await asyncio.sleep(0.5)
    assert event["id"] > 1  # ids never go back, though the shard forgot the room
    assert await messages(hearers[stormy], 1) == [event]
    with redis_shards[1].client() as client:  # both members claimed again on the new shard
        key = f"shards:members:{room_group(stormy)}"
        assert await wait_until(lambda: client.hlen(key), lambda count: count == 2) == 2
    await assert_refused_as_taken(await join(a, stormy, "hearer"), "hearer")
    for ws in (*speakers.values(), *hearers.values()):
        await ws.close()


async def test_a_room_moved_to_a_new_shard_keeps_its_ids_and_history(start_server, redis_shards):
    first = {"REDIS_URL": redis_shards[0].url, "REDIS_PREFIX": "shards"}
    moving = room_on(1)  # on shard 0 alone, then on shard 1 of two
    old = start_server("serve", **first)
    sender = await joined(old, moving, "Sender")
    for n in range(5):
        await sender.send(said(f"before {n}"))
    assert [event["id"] for event in await messages(sender, 5)] == [1, 2, 3, 4, 5]
    await sender.close()
    old.stop()  # its history written; every process restarted with the new shard list

    both = f"{redis_shards[0].url},{redis_shards[1].url}"
    new = start_server("serve", REDIS_URL=both, REDIS_PREFIX="shards")
    back = await join(new, moving, "Back", format="json", since="2")
    assert (await recv_json(back))["last_id"] == 5
    replayed = await messages(back, 3)  # from the database: the new shard has no cache yet
    assert [(event["id"], event["text"]) for event in replayed] == [
        (3 + n, f"before {2 + n}") for n in range(3)
    ]
    await back.send(said("after"))
    assert [(e["id"], e["text"]) for e in await messages(back, 1)] == [(6, "after")]
    with redis_shards[1].client() as client:
        assert client.exists(f"shards:seq:{{{room_group(moving)}}}")
    await back.close()
