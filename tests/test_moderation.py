"""Moderation in process, through the ASGI application: kick, ban, mute and lift them,
delete a message; refused for non-moderators; the admin's actions."""

import asyncio

import orjson
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import AsyncClient, Client, override_settings

from rooms.access import tokens
from rooms.core import errors
from rooms.models import Message, Room, Sanction
from rooms.state.backends import get_writer
from tests.communicators import communicator

make_user = database_sync_to_async(User.objects.create_user)


async def moderator(room: str = "Hall", name: str = "mod"):
    """A JSON client signed in as a moderator of `room`, past its welcome and join."""
    user = await make_user(name)
    await database_sync_to_async(call_command)("room_access", room, "--add-moderator", name)
    ws = await communicator(room, None, format="json", token=tokens.issue(user, 60))
    welcome = await frame(ws)
    assert welcome["moderator"] is True
    assert (await frame(ws))["type"] == "join"
    return ws


async def member(room: str, nickname: str, **query: str):
    """A JSON client past its welcome and its own join."""
    ws = await communicator(room, nickname, format="json", **query)
    welcome = await frame(ws)
    assert welcome["type"] == "welcome", welcome
    assert (await frame(ws))["type"] == "join"
    return ws


async def frame(ws) -> dict:
    return orjson.loads(await ws.receive_from())


async def frame_of_type(ws, kind: str) -> dict:
    """The next frame of type `kind`, skipping others (joins, leaves)."""
    while (event := await frame(ws))["type"] != kind:
        pass
    return event


async def closed_with(ws) -> tuple[dict, int]:
    """The error frame a member gets, then its close code."""
    error = await frame_of_type(ws, "error")
    close = await ws.receive_output()
    assert close["type"] == "websocket.close"
    return error, close["code"]


async def say(ws, text: str) -> dict:
    await ws.send_to(orjson.dumps({"type": "message", "text": text}).decode())
    return await frame_of_type(ws, "message")


async def command(ws, **fields) -> dict:
    """Send a command; the reply (moderated, or an error), past room events."""
    await ws.send_to(orjson.dumps(fields).decode())
    while (event := await frame(ws))["type"] not in ("moderated", "error"):
        pass
    return event


async def test_a_member_who_does_not_moderate_is_refused_every_command_and_stays():
    nick = await member("Hall", "Nick")
    alex = await member("Hall", "Alex")
    await frame(nick)  # Alex's join
    for fields in (
        {"type": "kick", "nickname": "Alex"},
        {"type": "ban", "nickname": "Alex"},
        {"type": "mute", "nickname": "Alex"},
        {"type": "unban", "nickname": "Alex"},
        {"type": "delete", "id": 1},
    ):
        refused = await command(nick, **fields)
        assert (refused["code"], refused["close"]) == (errors.FORBIDDEN, None), fields
    assert (await say(nick, "still here"))["text"] == "still here"
    assert (await frame(alex))["text"] == "still here"
    await nick.disconnect()
    await alex.disconnect()


async def test_a_kicked_member_is_told_why_and_closed_with_4403_and_the_room_sees_it_leave():
    mod = await moderator()
    nick = await member("Hall", "Nick")
    await frame(mod)  # Nick's join
    done = await command(mod, type="kick", nickname="nick", reason="spam")
    assert done == {"type": "moderated", "room": "Hall", "action": "kick", "nickname": "Nick"}
    error, code = await closed_with(nick)
    assert (error["code"], code) == (errors.KICKED, errors.WS_4403_FORBIDDEN)
    assert error["message"] == "A moderator removed you from this room: spam"
    await nick.disconnect()  # the client's answer to the close (a real server's: tests/test_live)
    assert (await frame(mod))["type"] == "leave"
    again = await member("Hall", "Nick")  # a kick holds nothing for later
    await again.disconnect()
    await mod.disconnect()


async def test_kicking_someone_who_is_not_there_is_command_invalid():
    mod = await moderator()
    refused = await command(mod, type="kick", nickname="Ghost")
    assert (refused["code"], refused["close"]) == (errors.COMMAND_INVALID, None)
    await mod.disconnect()


async def test_a_banned_member_is_closed_and_refused_until_the_ban_ends():
    mod = await moderator()
    nick = await member("Hall", "Nick")
    await frame(mod)
    done = await command(mod, type="ban", nickname="Nick", seconds=2, reason="flood")
    assert done["action"] == "ban" and done["until"] > 0
    error, code = await closed_with(nick)
    assert (error["code"], code) == (errors.BANNED, errors.WS_4403_FORBIDDEN)
    assert error["message"].endswith(": flood")
    await nick.disconnect()
    for name in ("Nick", "NICK", "Nіck"):  # any case or look-alike of the name
        again = await communicator("Hall", name, format="json")
        error, code = await closed_with(again)
        assert (error["code"], code) == (errors.BANNED, errors.WS_4403_FORBIDDEN)
    elsewhere = await member("Other room", "Nick")
    await elsewhere.disconnect()
    await asyncio.sleep(2.1)
    back = await member("Hall", "Nick")
    await back.disconnect()
    await mod.disconnect()


async def test_a_ban_given_to_an_absent_name_and_lifted_by_unban():
    mod = await moderator()
    assert (await command(mod, type="ban", nickname="Later"))["action"] == "ban"
    refused = await communicator("Hall", "Later", format="json")
    assert (await closed_with(refused))[0]["code"] == errors.BANNED
    assert (await command(mod, type="unban", nickname="later"))["action"] == "unban"
    back = await member("Hall", "Later")
    await back.disconnect()
    await mod.disconnect()


async def test_a_banned_user_is_refused_under_their_account():
    mod = await moderator()
    ann = await make_user("ann")
    ws = await communicator("Hall", None, format="json", token=tokens.issue(ann, 60))
    await frame(ws), await frame(ws)
    await command(mod, type="ban", nickname="ann")
    await closed_with(ws)
    row = await database_sync_to_async(Sanction.objects.select_related("by").get)()
    assert (row.kind, row.user_id, row.nickname_key, row.by.username) == (
        "ban",
        ann.pk,
        "ann",
        "mod",
    )
    again = await communicator("Hall", None, format="json", token=tokens.issue(ann, 60))
    assert (await closed_with(again))[0]["code"] == errors.BANNED
    await mod.disconnect()


async def test_a_muted_member_is_refused_messages_and_stays_until_unmuted():
    mod = await moderator()
    nick = await member("Hall", "Nick")
    await frame(mod)
    done = await command(mod, type="mute", nickname="Nick", seconds=60)
    assert done["action"] == "mute" and done["until"] > 0
    await nick.send_to('{"type": "message", "text": "let me speak"}')
    refused = await frame(nick)
    assert (refused["code"], refused["close"]) == (errors.MUTED, None)
    assert await mod.receive_nothing(0.2)
    await nick.disconnect()
    assert (await frame(mod))["type"] == "leave"
    nick = await member("Hall", "Nick")  # still muted after rejoining
    await nick.send_to('{"type": "message", "text": "now?"}')
    assert (await frame(nick))["code"] == errors.MUTED
    await frame(mod)  # the join
    assert (await command(mod, type="unmute", nickname="Nick"))["action"] == "unmute"
    assert (await say(nick, "thanks"))["text"] == "thanks"
    await nick.disconnect()
    await mod.disconnect()


async def test_a_moderator_cannot_be_kicked_banned_or_muted_by_a_moderator():
    mod = await moderator()
    other = await make_user("other")
    await database_sync_to_async(call_command)("room_access", "Hall", "--add-moderator", "other")
    ws = await communicator("Hall", None, format="json", token=tokens.issue(other, 60))
    await frame(ws), await frame(ws)
    await frame(mod)
    for action in ("kick", "ban", "mute"):
        refused = await command(mod, type=action, nickname="other")
        assert (refused["code"], refused["close"]) == (errors.FORBIDDEN, None)
    refused = await command(mod, type="kick", nickname="mod")
    assert refused["code"] == errors.FORBIDDEN
    assert await ws.receive_nothing(0.2)
    await ws.disconnect()
    await mod.disconnect()


async def test_text_clients_moderate_with_slash_commands():
    user = await make_user("boss", is_superuser=True)  # every room
    boss = await communicator("Room1", None, token=tokens.issue(user, 60))
    assert await boss.receive_from() == "boss joined Room1"
    nick = await communicator("Room1", "Nick")
    await nick.receive_from(), await boss.receive_from()
    await boss.send_to("/mute Nick 60")
    assert (await boss.receive_from()).startswith("Nick muted until ")
    await nick.send_to("hello")
    assert (await nick.receive_from()).startswith("error MUTED: You are muted in this room")
    await boss.send_to("/kick Nick bye now")
    assert await boss.receive_from() == "Nick removed"
    assert await nick.receive_from() == (
        "error KICKED: A moderator removed you from this room: bye now"
    )
    await nick.disconnect()
    assert await boss.receive_from() == "Nick left the room"
    await boss.send_to("/delete 999")
    assert await boss.receive_from() == "error COMMAND_INVALID: No message 999 in this room."
    await boss.disconnect()


async def history_texts(room: str, **query: str) -> list[str]:
    """The texts a new JSON joiner is replayed."""
    ws = await communicator(room, "Reader", format="json", **query)
    texts = []
    while (event := await frame(ws))["type"] != "join":
        if event["type"] == "message":
            texts.append(event["text"])
    await ws.disconnect()
    return texts


async def api_texts(room: str) -> list[str]:
    response = await AsyncClient().get(f"/api/rooms/{room}/messages")
    return [message["text"] for message in orjson.loads(response.content)["messages"]]


@override_settings(ROOMS_FLUSH_INTERVAL=60)  # written when the test says
async def test_a_deleted_message_reaches_members_as_an_event_and_leaves_replay_and_the_api():
    mod = await moderator()
    nick = await member("Hall", "Nick")
    text = await communicator("Hall", "Tex")
    await text.receive_from()
    await frame(mod), await frame(mod), await frame(nick)
    written = await say(nick, "written first")
    await get_writer().flush()  # in the database by now
    pending = await say(nick, "deleted before it is written")
    await say(nick, "kept")
    assert get_writer().pending == 2
    for message in (written, pending):
        done = await command(mod, type="delete", id=message["id"])
        assert done == {
            "type": "moderated",
            "room": "Hall",
            "action": "delete",
            "id": message["id"],
        }
    deletes = [await frame_of_type(nick, "delete") for _ in range(2)]
    assert [(event["id"], event["nickname"]) for event in deletes] == [
        (written["id"], "Nick"),
        (pending["id"], "Nick"),
    ]
    lines = [await text.receive_from() for _ in range(5)]
    assert lines[-2:] == ["A moderator deleted a message by Nick"] * 2
    await get_writer().flush()
    assert await history_texts("Hall") == ["kept"]
    assert await history_texts("Hall", since="0") == ["kept"]
    assert await api_texts("Hall") == ["kept"]
    rows = await database_sync_to_async(list)(
        Message.objects.order_by("seq").values_list("text", "deleted_at")
    )
    assert [(text, when is not None) for text, when in rows] == [
        ("written first", True),
        ("deleted before it is written", True),
        ("kept", False),
    ]
    again = await command(mod, type="delete", id=pending["id"])
    assert (again["code"], again["close"]) == (errors.COMMAND_INVALID, None)
    for ws in (mod, nick, text):
        await ws.disconnect()


async def test_the_admin_deletes_selected_messages_for_everyone_at_once():
    await make_user("root", password="pw", is_superuser=True, is_staff=True)
    nick = await member("Hall", "Nick")
    doomed = await say(nick, "bad")
    await say(nick, "good")
    await get_writer().flush()

    def delete_in_admin() -> int:
        client = Client()
        client.login(username="root", password="pw")
        pk = Message.objects.get(seq=doomed["id"]).pk
        response = client.post(
            "/admin/rooms/message/",
            {"action": "delete_messages", "_selected_action": [pk]},
        )
        return response.status_code

    assert await sync_to_async(delete_in_admin)() == 302
    event = await frame_of_type(nick, "delete")
    assert event["id"] == doomed["id"]
    assert await api_texts("Hall") == ["good"]
    await nick.disconnect()


async def test_the_admin_lifts_a_ban():
    mod = await moderator()
    await command(mod, type="ban", nickname="Nick")
    await make_user("root", password="pw", is_superuser=True, is_staff=True)

    def lift_in_admin() -> int:
        client = Client()
        client.login(username="root", password="pw")
        pk = Sanction.objects.get().pk
        response = client.post(
            "/admin/rooms/sanction/", {"action": "lift", "_selected_action": [pk]}
        )
        return response.status_code

    assert await sync_to_async(lift_in_admin)() == 302
    back = await member("Hall", "Nick")
    await back.disconnect()
    await mod.disconnect()


async def test_a_ban_given_in_the_admin_closes_the_member_and_refuses_it_later():
    mod = await moderator()
    await make_user("root", password="pw", is_superuser=True, is_staff=True)
    nick = await member("Hall", "Nick")

    def give(kind: str, nickname: str, until: str = "") -> tuple[int, int]:
        client = Client()
        client.login(username="root", password="pw")
        room = Room.objects.get(name="Hall").pk
        form = {"room": room, "kind": kind, "nickname": nickname, "reason": "from the admin"}
        if until:
            form["until_0"], form["until_1"] = until.split(" ")
        response = client.post("/admin/rooms/sanction/add/", form)
        return response.status_code, Sanction.objects.count()

    assert await sync_to_async(give)("kick", "Ghost") == (200, 0)  # not there: refused
    assert await sync_to_async(give)("ban", "mod", "2099-01-01 00:00:00") == (200, 0)
    assert await sync_to_async(give)("ban", "nick", "2099-01-01 00:00:00") == (302, 1)
    error, code = await closed_with(nick)
    assert (error["code"], code) == (errors.BANNED, errors.WS_4403_FORBIDDEN)
    assert error["message"].endswith("2099-01-01T00:00:00+00:00: from the admin")
    await nick.disconnect()
    again = await communicator("Hall", "Nick", format="json")
    assert (await closed_with(again))[0]["code"] == errors.BANNED
    row = await database_sync_to_async(Sanction.objects.select_related("by").get)()
    assert (row.nickname, row.nickname_key, row.by.username) == ("Nick", "nick", "root")
    await mod.disconnect()
