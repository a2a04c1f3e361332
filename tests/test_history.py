"""History: ids, persistence, replay on join, restarts and retention, on SQLite and PostgreSQL."""

import asyncio
import sqlite3
import time
from io import StringIO

import dj_database_url
import orjson
import psycopg
import pytest
import redis
from django.core.management import call_command
from django.test import override_settings

from rooms.models import Message, Room
from rooms.state.backends import get_sequence, get_writer
from tests.clients import join, recv, recv_json
from tests.communicators import assert_recovered_with_gap, communicator

FAST = {"FLUSH_INTERVAL_MS": "50"}


@pytest.fixture
def database_url(any_database_url: str) -> str:
    """These tests run once on SQLite and once on PostgreSQL."""
    return any_database_url


def stored(url: str, room: str) -> list[tuple[int, str, str]]:
    """(id, nickname, text) of the room's persisted messages, read straight from the database."""
    query = (
        "SELECT m.seq, m.nickname, m.text FROM rooms_message m JOIN rooms_room r"
        " ON r.id = m.room_id WHERE r.name = %s ORDER BY m.seq"
    )
    config = dj_database_url.parse(url)
    if config["ENGINE"].endswith("sqlite3"):
        with sqlite3.connect(config["NAME"]) as connection:
            return connection.execute(query.replace("%s", "?"), (room,)).fetchall()
    with psycopg.connect(url) as connection:
        return connection.execute(query, (room,)).fetchall()


def wait_stored(url: str, room: str, count: int, timeout: float = 10.0) -> list:
    """Poll until the room has `count` persisted messages (the writer flushes in batches)."""
    deadline = time.monotonic() + timeout
    while len(rows := stored(url, room)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return rows


async def say(ws, *texts: str) -> None:
    for text in texts:
        await ws.send(text)


async def test_messages_are_persisted_and_json_joiners_get_the_last_n_before_live_ones(
    start_server, database_url
):
    server = start_server("daphne", HISTORY_ON_JOIN="3", **FAST)
    nick = await join(server, "Room1", "Nick")
    await recv(nick)
    await say(nick, *(f"m{n}" for n in range(1, 6)))
    assert [await recv(nick) for _ in range(5)] == [f"Nick: m{n}" for n in range(1, 6)]

    alex = await join(server, "Room1", "Alex", format="json")
    welcome = await recv_json(alex)
    assert welcome["members"] == ["Alex", "Nick"] and welcome["last_id"] == 5
    history = [await recv_json(alex) for _ in range(3)]
    assert [(m["type"], m["id"], m["text"]) for m in history] == [
        ("message", 3, "m3"),
        ("message", 4, "m4"),
        ("message", 5, "m5"),
    ]
    assert (await recv_json(alex))["type"] == "join"
    await nick.send("live")
    assert (await recv_json(alex))["id"] == 6

    plain = await join(server, "Room1", "Plain")
    assert await recv(plain) == "Plain joined Room1"  # text clients: no history unless asked
    asked = await join(server, "Room1", "Asked", history="2")
    assert [await recv(asked) for _ in range(3)] == [
        "Nick: m5",
        "Nick: live",
        "Asked joined Room1",
    ]
    none = await join(server, "Room1", "None", format="json", history="0")
    assert (await recv_json(none))["type"] == "welcome"
    assert (await recv_json(none))["type"] == "join"
    assert wait_stored(database_url, "Room1", 6) == [
        *((n, "Nick", f"m{n}") for n in range(1, 6)),
        (6, "Nick", "live"),
    ]
    for ws in (nick, alex, plain, asked, none):
        await ws.close()


async def test_history_and_ids_survive_a_restart(start_server, database_url):
    server = start_server("daphne", **FAST)
    nick = await join(server, "Кухня 🍳", "Nick", format="json")
    await recv_json(nick), await recv_json(nick)
    await say(nick, *(orjson.dumps({"type": "message", "text": t}).decode() for t in "abc"))
    sent = [await recv_json(nick) for _ in range(3)]
    assert [m["id"] for m in sent] == [1, 2, 3]
    assert len(wait_stored(database_url, "Кухня 🍳", 3)) == 3
    await nick.close()
    server.restart()

    back = await join(server, "Кухня 🍳", "Nick", format="json")
    assert (await recv_json(back))["last_id"] == 3
    assert [await recv_json(back) for _ in range(3)] == sent  # the same frames as live
    assert (await recv_json(back))["type"] == "join"
    await back.send('{"type": "message", "text": "d"}')
    assert (await recv_json(back))["id"] == 4  # continues from the database, not from 1
    await back.close()


@pytest.mark.redis
async def test_ids_continue_from_the_database_when_redis_loses_its_counters(
    start_server, database_url, redis_env
):
    env = {**redis_env, **FAST}
    server = start_server("daphne", **env)
    nick = await join(server, "Room1", "Nick", format="json")
    await recv_json(nick), await recv_json(nick)
    await say(nick, *(orjson.dumps({"type": "message", "text": t}).decode() for t in "ab"))
    assert [(await recv_json(nick))["id"] for _ in range(2)] == [1, 2]
    assert len(wait_stored(database_url, "Room1", 2)) == 2
    await nick.close()
    server.stop()
    client = redis.Redis.from_url(redis_env["REDIS_URL"])
    client.delete(*client.scan_iter(f"{redis_env['REDIS_PREFIX']}*"))
    server.start()
    back = await join(server, "Room1", "Nick", format="json")
    assert (await recv_json(back))["last_id"] == 2
    assert [(await recv_json(back))["text"] for _ in range(2)] == ["a", "b"]  # from the database
    await recv_json(back)
    await back.send('{"type": "message", "text": "c"}')
    assert (await recv_json(back))["id"] == 3
    await back.close()


async def test_prune_keeps_the_newest_and_recovery_reports_the_gap():
    nick = await communicator("Room1", "Nick")
    await nick.receive_from()
    for n in range(1, 8):
        await nick.send_to(f"m{n}")
        await nick.receive_from()
    await get_writer().flush()
    out = await asyncio.to_thread(_prune, 3)
    assert out.strip().splitlines() == ["Room1: 4 deleted", "4 messages deleted"]
    assert await asyncio.to_thread(_seqs) == [5, 6, 7]

    get_sequence.cache_clear()  # as in a new process: no recent cache, all from the database
    late = await communicator("Room1", "Late", format="json", since="2")
    await assert_recovered_with_gap(late, "Room1", (3, 4), [5, 6, 7])
    await nick.disconnect()
    await late.disconnect()


def _prune(keep: int) -> str:
    out = StringIO()
    call_command("prune_messages", messages=keep, days=0, stdout=out)
    return out.getvalue()


def _seqs() -> list[int]:
    assert Room.objects.get(name="Room1").pruned_through == 4
    return list(Message.objects.values_list("seq", flat=True))


@override_settings(ROOMS_FLUSH_INTERVAL=60)
async def test_messages_are_written_off_the_fan_out_path_and_close_writes_the_rest():
    nick = await communicator("Room1", "Nick")
    await nick.receive_from()
    for n in range(20):
        await nick.send_to(f"m{n}")
        await nick.receive_from()
    assert get_writer().pending == 20  # not written on the fan-out path
    await get_writer().close()
    assert get_writer().pending == 0
    assert await asyncio.to_thread(lambda: Message.objects.count()) == 20
    await nick.disconnect()


@pytest.mark.redis
async def test_an_idle_rooms_redis_keys_expire_and_its_ids_carry_on(
    start_server, database_url, redis_env
):
    server = start_server("serve", ROOM_KEY_TTL="1", **redis_env, **FAST)
    prefix = redis_env["REDIS_PREFIX"]
    client = redis.Redis.from_url(redis_env["REDIS_URL"])
    nick = await join(server, "Room1", "Nick", format="json")
    await recv_json(nick), await recv_json(nick)
    await say(nick, *(orjson.dumps({"type": "message", "text": t}).decode() for t in "ab"))
    assert [(await recv_json(nick))["id"] for _ in range(2)] == [1, 2]
    keys = [f"{prefix}:{kind}:{{room.Room1}}" for kind in ("seq", "recent", "recent-bytes")]
    assert all(0 < client.pttl(key) <= 1000 for key in keys)
    await asyncio.sleep(1.5)
    assert client.exists(*keys) == 0
    await nick.send(orjson.dumps({"type": "message", "text": "c"}).decode())
    assert (await recv_json(nick))["id"] == 3  # not 1: the floor survives the keys
    await nick.close()
    assert [row[0] for row in wait_stored(database_url, "Room1", 3)] == [1, 2, 3]
