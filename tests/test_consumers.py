"""The consumer in process, through Channels' WebsocketCommunicator; faults injected
where a live server cannot be made to fail."""

import asyncio

import orjson
import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from chatproject.asgi import application
from rooms.core import commands, errors
from rooms.core.limits import connections
from tests.clients import chat_path
from tests.communicators import communicator


async def test_joiner_and_members_see_the_join_notice():
    nick = await communicator("Room1", "Nick")
    assert await nick.receive_from() == "Nick joined Room1"
    alex = await communicator("Room1", "Alex")
    assert await alex.receive_from() == "Alex joined Room1"
    assert await nick.receive_from() == "Alex joined Room1"
    await nick.disconnect()
    await alex.disconnect()


async def test_message_reaches_every_member_and_the_sender():
    nick = await communicator("Room1", "Nick")
    alex = await communicator("Room1", "Alex")
    await nick.receive_from(), await nick.receive_from(), await alex.receive_from()
    await alex.send_to("hello")
    assert await alex.receive_from() == "Alex: hello"
    assert await nick.receive_from() == "Alex: hello"
    await nick.disconnect()
    await alex.disconnect()


async def test_leave_notice_reaches_remaining_members():
    nick = await communicator("Room1", "Nick")
    alex = await communicator("Room1", "Alex")
    await nick.receive_from(), await nick.receive_from(), await alex.receive_from()
    await alex.disconnect()
    assert await nick.receive_from() == "Alex left the room"
    await nick.disconnect()


async def test_nothing_crosses_rooms():
    nick = await communicator("Room1", "Nick")
    alex = await communicator("Room2", "Alex")
    await nick.receive_from(), await alex.receive_from()
    await nick.send_to("only room one")
    assert await nick.receive_from() == "Nick: only room one"
    assert await alex.receive_nothing(0.2)
    await nick.disconnect()
    await alex.disconnect()


async def test_json_client_gets_welcome_then_json_events_sharing_a_room_with_text():
    text = await communicator("Room1", "Nick")
    await text.receive_from()
    js = await communicator("Room1", "Alex", format="json")
    welcome = orjson.loads(await js.receive_from())
    assert welcome["type"] == "welcome" and welcome["room"] == "Room1"
    assert orjson.loads(await js.receive_from())["type"] == "join"
    assert await text.receive_from() == "Alex joined Room1"
    await js.send_to(orjson.dumps({"type": "message", "text": "hi"}).decode())
    event = orjson.loads(await js.receive_from())
    assert event["type"] == "message" and event["text"] == "hi" and event["nickname"] == "Alex"
    assert isinstance(event["id"], int) and isinstance(event["ts"], int)
    assert await text.receive_from() == "Alex: hi"
    await text.disconnect()
    await js.disconnect()


async def test_message_ids_increase_within_a_room():
    js = await communicator("Ids", "Nick", format="json")
    await js.receive_from(), await js.receive_from()
    ids = []
    for n in range(3):
        await js.send_to(orjson.dumps({"type": "message", "text": str(n)}).decode())
        ids.append(orjson.loads(await js.receive_from())["id"])
    assert ids == sorted(ids) and len(set(ids)) == 3
    await js.disconnect()


@pytest.mark.parametrize(
    ("room", "nickname", "query", "code"),
    [
        ("Room1", None, {}, errors.NICKNAME_REQUIRED),
        ("Room1", "", {}, errors.NICKNAME_REQUIRED),
        ("Room1", "n" * 33, {}, errors.NICKNAME_INVALID),
        ("Room1", "Ni\x07ck", {}, errors.NICKNAME_INVALID),
        ("r" * 101, "Nick", {}, errors.ROOM_INVALID),
        ("a/b", "Nick", {}, errors.ROOM_INVALID),
        ("Room1", "Nick", {"format": "xml"}, errors.FORMAT_INVALID),
    ],
)
async def test_bad_handshake_gets_an_error_frame_and_close_4400(room, nickname, query, code):
    member = await communicator("Room1", "Member")
    await member.receive_from()
    bad = await communicator(room, nickname, **query)
    assert await bad.receive_from() == f"error {code}: " + (await _message_of(code, nickname))
    assert (await bad.receive_output())["code"] == errors.WS_4400_BAD_REQUEST
    assert await member.receive_nothing(0.1)
    await member.disconnect()


async def _message_of(code: str, nickname: str | None) -> str:
    if nickname == "Ni\x07ck":
        return (
            "Nicknames cannot contain invisible, control, unassigned or direction-changing "
            "characters (found U+0007)."
        )
    return {
        errors.NICKNAME_REQUIRED: "No nickname specified.",
        errors.NICKNAME_INVALID: "Nicknames are 1 to 32 printable characters.",
        errors.ROOM_INVALID: "Room names are 1 to 100 printable characters, without '/'.",
        errors.FORMAT_INVALID: "Unknown format 'xml': use one of text, json.",
    }[code]


async def test_unknown_path_gets_not_found_and_close_4404():
    communicator = WebsocketCommunicator(application, "/ws/elsewhere/")
    assert (await communicator.connect())[0]
    assert (await communicator.receive_from()).startswith("error NOT_FOUND:")
    assert (await communicator.receive_output())["code"] == errors.WS_4404_NOT_FOUND


@pytest.mark.parametrize(
    ("fmt", "frame", "code"),
    [
        ("text", {"bytes_data": b"\x00\xff"}, errors.BINARY_UNSUPPORTED),
        ("text", {"text_data": "x" * 4097}, errors.MESSAGE_TOO_LONG),
        ("json", {"text_data": "not json"}, errors.JSON_INVALID),
        ("json", {"text_data": '{"type": "message"}'}, errors.COMMAND_INVALID),
        ("json", {"bytes_data": b"{}"}, errors.BINARY_UNSUPPORTED),
    ],
)
async def test_bad_frame_gets_an_error_and_the_session_goes_on(fmt, frame, code):
    other = await communicator("Room1", "Other")
    await other.receive_from()
    sender = await communicator("Room1", "Nick", format=fmt)
    await other.receive_from()
    for _ in range(2 if fmt == "json" else 1):
        await sender.receive_from()
    await sender.send_to(**frame)
    reply = await sender.receive_from()
    got = orjson.loads(reply)["code"] if fmt == "json" else reply.split(":")[0]
    assert got == (code if fmt == "json" else f"error {code}")
    assert await other.receive_nothing(0.1)
    good = orjson.dumps({"type": "message", "text": "still here"}).decode()
    await sender.send_to(good if fmt == "json" else "still here")
    assert await other.receive_from() == "Nick: still here"
    await sender.disconnect()
    await other.disconnect()


@override_settings(ROOMS_MAX_MESSAGE_LENGTH=10)
async def test_message_limit_is_configurable():
    nick = await communicator("Room1", "Nick")
    await nick.receive_from()
    await nick.send_to("x" * 10)
    assert await nick.receive_from() == "Nick: " + "x" * 10
    await nick.send_to("x" * 11)
    assert (await nick.receive_from()).startswith(f"error {errors.MESSAGE_TOO_LONG}:")
    await nick.disconnect()


async def test_foreign_browser_origin_is_refused_and_no_origin_is_admitted():
    foreign = WebsocketCommunicator(
        application, chat_path("Room1", "Nick"), headers=[(b"origin", b"http://evil.example")]
    )
    assert not (await foreign.connect())[0]
    local = WebsocketCommunicator(
        application, chat_path("Room1", "Nick"), headers=[(b"origin", b"http://localhost:8000")]
    )
    assert (await local.connect())[0]
    await local.disconnect()


async def test_json_client_refused_at_the_handshake_gets_a_json_error():
    bad = await communicator("Room1", "n" * 40, format="json")
    error = orjson.loads(await bad.receive_from())
    assert error["type"] == "error" and error["code"] == errors.NICKNAME_INVALID
    assert error["close"] == errors.WS_4400_BAD_REQUEST
    assert (await bad.receive_output())["code"] == errors.WS_4400_BAD_REQUEST


async def _two_members() -> tuple[WebsocketCommunicator, WebsocketCommunicator]:
    alex = await communicator("Room1", "Alex")
    assert await alex.receive_from() == "Alex joined Room1"
    nick = await communicator("Room1", "Nick")
    assert await nick.receive_from() == await alex.receive_from() == "Nick joined Room1"
    return alex, nick


async def _nickname_free_and_room_serving(alex: WebsocketCommunicator) -> None:
    """Nick can join again, and the room still relays."""
    again = await communicator("Room1", "Nick")
    assert await again.receive_from() == await alex.receive_from() == "Nick joined Room1"
    await alex.send_to("still serving")
    assert await again.receive_from() == await alex.receive_from() == "Alex: still serving"
    await again.disconnect()
    await alex.disconnect()


async def test_a_handler_that_raises_still_leaves_and_frees_everything_it_held(monkeypatch):
    parse_message = commands.parse_message

    def fails_on_boom(text, data, fmt, max_length):
        if text == "boom":
            raise RuntimeError("injected fault")
        return parse_message(text, data, fmt, max_length)

    monkeypatch.setattr(commands, "parse_message", fails_on_boom)
    before = (connections.total, dict(connections.per_group))
    alex, nick = await _two_members()
    assert connections.total == before[0] + 2
    await nick.send_to("boom")
    with pytest.raises(RuntimeError, match="injected fault"):
        await nick.receive_output()  # the consumer stopped with the error
    assert await alex.receive_from() == "Nick left the room"
    assert connections.total == before[0] + 1
    await alex.disconnect()
    assert (connections.total, dict(connections.per_group)) == before
    alex = await communicator("Room1", "Alex")
    assert await alex.receive_from() == "Alex joined Room1"
    await _nickname_free_and_room_serving(alex)


async def test_a_leave_step_that_fails_skips_none_of_the_others(monkeypatch, caplog):
    alex, nick = await _two_members()
    before = connections.total
    layer = get_channel_layer()
    group_discard = layer.group_discard

    async def fails_once(group: str, channel: str) -> None:
        monkeypatch.setattr(layer, "group_discard", group_discard)
        raise RuntimeError("injected fault")

    monkeypatch.setattr(layer, "group_discard", fails_once)
    await nick.disconnect()
    assert await alex.receive_from() == "Nick left the room"
    assert connections.total == before - 1
    assert "leaving: " in caplog.text and "RuntimeError: injected fault" in caplog.text
    await _nickname_free_and_room_serving(alex)


async def test_a_consumer_cancelled_while_leaving_finishes_and_stays_cancelled(monkeypatch):
    alex, nick = await _two_members()
    before = connections.total
    layer = get_channel_layer()
    group_discard = layer.group_discard
    hung = asyncio.Event()

    async def hangs_once(group: str, channel: str) -> None:
        monkeypatch.setattr(layer, "group_discard", group_discard)
        hung.set()
        await asyncio.Event().wait()  # until cancelled

    monkeypatch.setattr(layer, "group_discard", hangs_once)
    # The client goes and its leave hangs; WebsocketCommunicator cancels the consumer after
    # a second, as Daphne does after CLOSE_TIMEOUT.
    await nick.disconnect()
    assert hung.is_set() and nick.future.cancelled()  # the cancellation was not swallowed
    assert await alex.receive_from() == "Nick left the room"
    assert connections.total == before - 1  # the steps after the cancelled one still ran
    await _nickname_free_and_room_serving(alex)
