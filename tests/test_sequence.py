"""Room state in a process: kept while a room is in use, bounded, and gone after."""

import asyncio

import orjson
from django.test import override_settings

from rooms.state.backends import get_sequence, get_writer
from tests.clients import join, recv
from tests.communicators import communicator


def message(text: str) -> str:
    return orjson.dumps({"type": "message", "text": text}).decode()


async def test_a_rooms_state_goes_when_its_last_member_leaves_and_its_messages_are_written():
    nick = await communicator("Room1", "Nick")
    alex = await communicator("Room1", "Alex")
    await nick.receive_from(), await nick.receive_from(), await alex.receive_from()
    await nick.send_to("hello")
    assert await alex.receive_from() == "Nick: hello"
    await get_writer().flush()
    await nick.disconnect()
    assert len(get_sequence().rooms) == 1  # Alex is still there
    await alex.disconnect()
    assert len(get_sequence().rooms) == 0


@override_settings(ROOMS_FLUSH_INTERVAL=60)
async def test_a_room_is_kept_until_its_messages_are_written_and_ids_continue_after():
    nick = await communicator("Room1", "Nick", format="json")
    await nick.receive_from(), await nick.receive_from()  # welcome, join
    for text in ("a", "b"):
        await nick.send_to(message(text))
        await nick.receive_from()
    await nick.disconnect()
    assert len(get_sequence().rooms) == 1  # two messages not written yet: still replayable

    back = await communicator("Room1", "Back", format="json", since="0")
    assert orjson.loads(await back.receive_from())["last_id"] == 2
    assert [orjson.loads(await back.receive_from())["text"] for _ in "ab"] == ["a", "b"]
    await back.receive_from()  # its join
    await back.disconnect()
    await get_writer().flush()
    get_sequence().rooms.sweep()
    assert len(get_sequence().rooms) == 0

    again = await communicator("Room1", "Again", format="json", history="0")
    assert orjson.loads(await again.receive_from())["last_id"] == 2  # from the database
    await again.receive_from()  # its join
    await again.send_to(message("c"))
    assert orjson.loads(await again.receive_from())["id"] == 3
    await again.disconnect()


@override_settings(ROOMS_RECENT_CACHE_BYTES=10_000)
async def test_a_rooms_recent_cache_is_bounded_in_bytes():
    nick = await communicator("Room1", "Nick")
    await nick.receive_from()
    for n in range(30):
        await nick.send_to(f"{n:02d}" + "x" * 998)
        await nick.receive_from()
    cached = await get_sequence().recent("room.Room1", 0, 1000, 1000)
    assert sum(len(frame.encode()) for _, frame in cached) <= 10_000
    assert [message_id for message_id, _ in cached] == list(range(22, 31))  # the newest
    await nick.disconnect()


async def test_rooms_visited_and_left_give_their_memory_back(start_server):
    # One client per room sends 20 messages of 4,000 characters and leaves: nothing of the
    # room may stay in the process once its messages are written (issue 14: 95 MB kept for
    # 1,000 rooms before).
    server = start_server("serve", RATE_LIMIT="0", JOIN_RATE="0", FLUSH_INTERVAL_MS="50")
    text = "x" * 4000

    async def visit(worker: int, rooms: range) -> None:
        for n in rooms:
            member = await join(server, f"Visit{worker}-{n}", "Guest")
            assert await recv(member) == f"Guest joined Visit{worker}-{n}"
            for _ in range(20):
                await member.send(text)
            for _ in range(20):
                await recv(member)
            await member.close()

    workers = 10
    await asyncio.gather(*(visit(worker, range(0, 20)) for worker in range(workers)))
    baseline = server.rss_kib()
    await asyncio.gather(*(visit(worker, range(20, 220)) for worker in range(workers)))
    await asyncio.sleep(0.5)  # the last batch written
    grown = server.rss_kib() - baseline
    assert grown < 20 * 1024, f"{grown} KiB kept after 2,000 rooms"
