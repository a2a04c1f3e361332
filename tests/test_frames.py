"""Server frames built once per message: byte-exact RFC 6455 frames, shared by recipients,
and written in bursts by the production launchers (tests.servers.LAUNCHERS)."""

import asyncio

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from rooms.server import wire
from rooms.server.connection import SendQueue
from rooms.server.wire import CACHE_SIZE, shared_text_frame, text_frame
from tests.clients import join, recv, recv_json, recv_n


def parse(frame: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(frame)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_is_one_final_unmasked_text_frame(length):
    text = "é" * (length // 2) + "x" * (length % 2)
    frame = parse(text_frame(text))
    assert frame.opcode is Opcode.TEXT and frame.fin
    assert frame.data.decode() == text


def test_the_same_text_object_gets_the_same_frame_object():
    text = "".join(["Nick: ", "hello"])
    assert shared_text_frame(text) is shared_text_frame(text)


def test_equal_texts_that_are_distinct_objects_get_equal_frames():
    first, second = "".join(["a", "b"]), "".join(["a", "b"])
    assert shared_text_frame(first) == shared_text_frame(second) == text_frame("ab")


def test_the_send_queue_keeps_order_and_holds_a_deque_only_while_frames_wait():
    queue = SendQueue()
    assert not queue and queue.items is None
    queue.append((b"a", False))
    queue.append((b"b", True))
    assert len(queue) == 2
    assert queue.popleft() == (b"a", False)
    assert queue.popleft() == (b"b", True)
    assert not queue and queue.items is None


def test_the_cache_stays_bounded():
    texts = [f"message {n}" for n in range(CACHE_SIZE * 2)]
    for text in texts:
        assert parse(shared_text_frame(text)).data.decode() == text

    assert len(wire._cache) <= CACHE_SIZE


@pytest.fixture
def serve(start_server, launcher):
    """A production launcher, whose consumers write shared frames in bursts."""
    return start_server(launcher, MAX_MESSAGE_LENGTH="70000", RATE_LIMIT="0")


async def test_messages_of_every_frame_length_arrive_intact_through_the_launcher(serve):
    text_client = await join(serve, "Sizes", "Nick")
    json_client = await join(serve, "Sizes", "Alex", format="json")
    await recv_n(text_client, 2)
    await recv_n(json_client, 2)
    for length in (0, 1, 119, 120, 65529, 65530, 69000):
        body = "é" * (length // 2) + "x" * (length % 2)
        await text_client.send(body)
        assert await recv(text_client) == f"Nick: {body}"
        assert (await recv_json(json_client))["text"] == body
    await text_client.close()
    await json_client.close()


async def test_a_burst_reaches_every_member_complete_and_in_order_through_the_launcher(serve):
    members = [await join(serve, "Burst", f"u{n}") for n in range(20)]
    for n, member in enumerate(members):
        await recv_n(member, 20 - n)

    async def send_all(n: int) -> None:
        for seq in range(50):
            await members[n].send(f"m{seq}")

    await asyncio.gather(*(send_all(n) for n in range(5)))
    streams = await asyncio.gather(*(recv_n(member, 250) for member in members))
    assert all(stream == streams[0] for stream in streams)
    for n in range(5):
        assert [line for line in streams[0] if line.startswith(f"u{n}: ")] == [
            f"u{n}: m{seq}" for seq in range(50)
        ]
    await asyncio.gather(*(member.close() for member in members))


async def test_a_reply_to_one_client_follows_the_room_events_written_before_it(serve):
    client = await join(serve, "Order", "Nick")
    await recv(client)
    for n in range(30):
        await client.send(f"m{n}")
    await client.send("/who")
    assert await recv_n(client, 31) == [
        *(f"Nick: m{n}" for n in range(30)),
        "Members of Order (1): Nick",
    ]
    await client.close()
