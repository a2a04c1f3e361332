"""Identity and authority: signed-in users, tokens, reserved names, private rooms, the
project's own rule, connections per user (in process, through the ASGI application)."""

import asyncio
import time
from io import StringIO

import orjson
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import AsyncClient, override_settings

from chatproject.asgi import application
from rooms.access import tokens
from rooms.access.directory import Directory
from rooms.core import errors
from tests.clients import chat_path

make_user = database_sync_to_async(User.objects.create_user)


async def connect(room: str, nickname: str | None = None, headers=(), **query: str):
    ws = WebsocketCommunicator(application, chat_path(room, nickname, **query), headers=headers)
    assert (await ws.connect())[0]
    return ws


async def joined_as(ws) -> str:
    """The nickname a JSON client joined under, from its welcome."""
    welcome = orjson.loads(await ws.receive_from())
    assert welcome["type"] == "welcome", welcome
    return welcome["nickname"]


async def refused(ws) -> tuple[dict, int]:
    """The error frame and the close code of a refused join."""
    frame = orjson.loads(await ws.receive_from())
    close = await ws.receive_output()
    assert close["type"] == "websocket.close"
    return frame, close["code"]


def token_for(user: User, ttl: int = 60) -> str:
    return tokens.issue(user, ttl)


# Tokens


async def test_a_token_names_its_user_until_it_expires_or_the_password_changes():
    ann = await make_user("ann", password="first password")
    token = token_for(ann)
    assert (await database_sync_to_async(tokens.user_for)(token)).pk == ann.pk
    for bad, why in [
        (token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), "not valid"),
        ("not a token", "not valid"),
        (tokens.issue(ann, -1), "expired"),
    ]:
        with pytest.raises(errors.ClientError, match=why):
            await database_sync_to_async(tokens.user_for)(bad)

    def change_password() -> None:
        ann.set_password("second password")
        ann.save()

    await database_sync_to_async(change_password)()
    with pytest.raises(errors.ClientError, match="no longer valid") as caught:
        await database_sync_to_async(tokens.user_for)(token)
    assert caught.value.close_code == errors.WS_4401_UNAUTHORIZED


async def test_issue_token_prints_a_token_that_joins_as_its_user():
    await make_user("bob")
    out = StringIO()
    await database_sync_to_async(call_command)("issue_token", "bob", ttl=30, stdout=out)
    ws = await connect("Room1", format="json", token=out.getvalue().strip())
    assert await joined_as(ws) == "bob"
    await ws.disconnect()


# Joining as a user


async def test_a_signed_in_user_joins_under_their_name_and_no_other():
    cid = await make_user("cid")
    ws = await connect("Room1", format="json", token=token_for(cid))
    assert await joined_as(ws) == "cid"
    assert orjson.loads(await ws.receive_from())["nickname"] == "cid"  # their join
    await ws.disconnect()
    same = await connect("Room1", "CID", format="json", token=token_for(cid))  # same key
    assert await joined_as(same) == "cid"
    await same.disconnect()
    other = await connect("Room1", "somebody", format="json", token=token_for(cid))
    frame, code = await refused(other)
    assert (frame["code"], code) == (errors.NICKNAME_NOT_YOURS, errors.WS_4403_FORBIDDEN)


async def test_a_browser_session_signs_its_user_in():
    await make_user("dee", password="a password")
    client = AsyncClient()
    assert await client.alogin(username="dee", password="a password")
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    ws = await connect("Room1", format="json", headers=[(b"cookie", cookie)])
    assert await joined_as(ws) == "dee"
    await ws.disconnect()


async def test_credentials_that_are_not_valid_get_4401_and_an_error_frame():
    ws = await connect("Room1", "Nick", token="forged")
    assert await ws.receive_from() == "error TOKEN_INVALID: This token is not valid."
    assert (await ws.receive_output())["code"] == errors.WS_4401_UNAUTHORIZED


@pytest.mark.parametrize("asked", ["eve", "EVE", "\u0415ve", "e\u200bve"])
async def test_a_registered_name_is_not_for_anonymous_clients(asked):
    await make_user("eve")
    frame, code = await refused(await connect("Room1", asked, format="json"))
    if asked == "e\u200bve":  # an invisible character: refused before that
        assert frame["code"] == errors.NICKNAME_INVALID
        return
    assert (frame["code"], code) == (errors.NICKNAME_RESERVED, errors.WS_4409_NICKNAME_TAKEN)


async def test_a_name_registered_after_the_server_started_is_reserved_at_once():
    early = await connect("Room1", "Nick", format="json")  # the directory is read by now
    await joined_as(early)
    await make_user("fay")
    frame, code = await refused(await connect("Room1", "Fay", format="json"))
    assert frame["code"] == errors.NICKNAME_RESERVED
    await early.disconnect()


@override_settings(ROOMS_ALLOW_ANONYMOUS=False)
async def test_without_anonymous_joins_only_users_get_in():
    gus = await make_user("gus")
    frame, code = await refused(await connect("Room1", "Nick", format="json"))
    assert (frame["code"], code) == (errors.AUTH_REQUIRED, errors.WS_4401_UNAUTHORIZED)
    ws = await connect("Room1", format="json", token=token_for(gus))
    assert await joined_as(ws) == "gus"
    await ws.disconnect()


@override_settings(ROOMS_MAX_CONNECTIONS_PER_USER=1)
async def test_a_user_holds_at_most_max_connections_per_user():
    hal = await make_user("hal")
    first = await connect("Room1", format="json", token=token_for(hal))
    await joined_as(first)
    frame, code = await refused(await connect("Room2", format="json", token=token_for(hal)))
    assert (frame["code"], code) == (errors.TOO_MANY_CONNECTIONS, errors.WS_4429_RATE_LIMITED)
    await first.disconnect()
    again = await connect("Room2", format="json", token=token_for(hal))
    assert await joined_as(again) == "hal"
    await again.disconnect()


# Private rooms, moderators, the project's rule


def _private_room(name: str, members=(), groups=(), moderators=()) -> None:
    out = StringIO()
    options = ["--private"]
    for flag, values in (("--add-member", members), ("--add-group", groups)):
        options += [item for value in values for item in (flag, value)]
    options += [item for value in moderators for item in ("--add-moderator", value)]
    call_command("room_access", name, *options, stdout=out)


async def test_a_private_room_admits_its_members_groups_moderators_and_staff_only():
    users = {name: await make_user(name) for name in ("ivy", "jon", "kim", "lea", "max")}

    def setup() -> None:
        crew = Group.objects.create(name="crew")
        users["jon"].groups.add(crew)
        users["lea"].is_staff = True
        users["lea"].save()
        _private_room("Vault", members=["ivy"], groups=["crew"], moderators=["kim"])

    await database_sync_to_async(setup)()
    for name in ("ivy", "jon", "kim", "lea"):
        ws = await connect("Vault", format="json", token=token_for(users[name]))
        assert await joined_as(ws) == name
        await ws.disconnect()
    for ws in (
        await connect("Vault", format="json", token=token_for(users["max"])),
        await connect("Vault", "Nick", format="json"),
    ):
        frame, code = await refused(ws)
        assert (frame["code"], code) == (errors.ROOM_FORBIDDEN, errors.WS_4403_FORBIDDEN)


async def test_moderators_are_told_so_in_their_welcome_and_others_are_not():
    mod, member = await make_user("mod"), await make_user("mem")
    await database_sync_to_async(_private_room)("Hall", members=["mem"], moderators=["mod"])
    ws = await connect("Hall", format="json", token=token_for(mod))
    assert orjson.loads(await ws.receive_from())["moderator"] is True
    other = await connect("Hall", format="json", token=token_for(member))
    assert "moderator" not in orjson.loads(await other.receive_from())
    await ws.disconnect()
    await other.disconnect()


def refuse_the_attic(user, room: str) -> bool:
    return room != "Attic"


async def refuse_the_cellar(user, room: str) -> bool:
    return room != "Cellar"


@pytest.mark.parametrize(
    ("hook", "room"),
    [
        ("tests.test_identity.refuse_the_attic", "Attic"),
        ("tests.test_identity.refuse_the_cellar", "Cellar"),
    ],
    ids=["sync", "async"],
)
async def test_the_projects_can_join_rule_refuses_on_top_of_ours(hook, room, settings):
    from rooms.access.rules import _can_join

    settings.ROOMS_CAN_JOIN = hook
    _can_join.cache_clear()
    try:
        frame, code = await refused(await connect(room, "Nick", format="json"))
        assert (frame["code"], code) == (errors.ROOM_FORBIDDEN, errors.WS_4403_FORBIDDEN)
        ws = await connect("Elsewhere", "Nick", format="json")
        assert await joined_as(ws) == "Nick"
        await ws.disconnect()
    finally:
        _can_join.cache_clear()


# The API


async def test_a_private_room_is_listed_and_read_only_by_whom_may_join_it():
    ned = await make_user("ned")
    await make_user("out")
    await database_sync_to_async(_private_room)("Vault", members=["ned"])
    member = await connect("Vault", format="json", token=token_for(ned))
    await joined_as(member), await member.receive_from()
    await member.send_to('{"type": "message", "text": "secret"}')
    await member.receive_from()
    public = await connect("Lobby", "Nick")
    await public.receive_from()
    client = AsyncClient()

    async def get(path: str, token: str | None = None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await client.get(path, headers=headers)
        return response.status_code, orjson.loads(response.content)

    outsider = token_for(await database_sync_to_async(User.objects.get)(username="out"))
    for token in (None, outsider):
        status, body = await get("/api/rooms", token)
        assert [room["name"] for room in body["rooms"]] == ["Lobby"]
        for path in ("/api/rooms/Vault/", "/api/rooms/Vault/messages"):
            assert (await get(path, token))[0] == 404
    status, body = await get("/api/rooms", token_for(ned))
    assert sorted(room["name"] for room in body["rooms"]) == ["Lobby", "Vault"]
    status, body = await get("/api/rooms/Vault/messages", token_for(ned))
    assert [message["text"] for message in body["messages"]] == ["secret"]
    status, body = await get("/api/rooms", "forged")
    assert (status, body["error"]["code"]) == (401, errors.TOKEN_INVALID)
    await member.disconnect()
    await public.disconnect()


async def test_a_room_made_private_while_in_use_refuses_the_next_outsider_at_once():
    early = await connect("Open", "Nick", format="json")
    await joined_as(early)
    await database_sync_to_async(_private_room)("Open")
    started = time.monotonic()
    frame, _ = await refused(await connect("Open", "Late", format="json"))
    assert frame["code"] == errors.ROOM_FORBIDDEN and time.monotonic() - started < 5
    await early.disconnect()


async def test_the_access_snapshot_is_in_place_as_soon_as_its_read_is_done():
    """A join that finds the read done must not need another: one arriving between the read's
    end and a callback applying it used to wait on it forever without yielding (a hung
    process under thousands of joins at once)."""
    directory = Directory(refresh=30)
    reading = directory._reload()
    while not reading.done():  # noqa: ASYNC110 - looks at the first turn it is done
        await asyncio.sleep(0)
    assert directory._have >= directory._wanted
    assert await asyncio.wait_for(directory.current(), 5) == directory._snapshot
    directory.close()


async def test_joins_arriving_while_the_snapshot_is_read_share_that_one_read():
    directory = Directory(refresh=30)
    snapshots = await asyncio.wait_for(
        asyncio.gather(*(directory.current() for _ in range(50))), 10
    )
    assert len({id(snapshot) for snapshot in snapshots}) == 1
    directory.close()
