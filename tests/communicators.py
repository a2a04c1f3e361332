"""In-process clients (Channels' WebsocketCommunicator) for the consumer-level tests."""

import orjson
from channels.testing import WebsocketCommunicator

from chatproject.asgi import application
from tests.clients import chat_path


async def communicator(room: str, nickname: str | None, **query: str) -> WebsocketCommunicator:
    """A client connected to `room` through the ASGI application, with no server."""
    ws = WebsocketCommunicator(application, chat_path(room, nickname, **query))
    assert (await ws.connect())[0]
    return ws


async def assert_recovered_with_gap(
    ws: WebsocketCommunicator, room: str, gap: tuple[int, int], ids: list[int]
) -> None:
    """A JSON rejoin with ?since=: welcome, the gap it cannot replay, the ids it can, its join."""
    assert orjson.loads(await ws.receive_from())["type"] == "welcome"
    assert orjson.loads(await ws.receive_from()) == {
        "type": "gap",
        "room": room,
        "from": gap[0],
        "to": gap[1],
    }
    assert [orjson.loads(await ws.receive_from())["id"] for _ in ids] == ids
    assert orjson.loads(await ws.receive_from())["type"] == "join"
