"""Moderation across two server processes (rooms.server.serve) sharing rooms through the real
Redis: a moderator on one reaches members on the other."""

import asyncio
import subprocess
import sys

import orjson
import pytest

from tests.clients import get_json, join, read_until_closed, recv, recv_json
from tests.servers import ROOT, Server

pytestmark = pytest.mark.redis


def manage(server: Server, *args: str) -> str:
    """A management command against the servers' database; what it printed."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=server.env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


@pytest.fixture
def two_servers(start_server, redis_env):
    a, b = start_server("serve", **redis_env), start_server("serve", **redis_env)
    manage(
        a,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.create_user('mod')",
    )
    manage(a, "room_access", "Hall", "--add-moderator", "mod")
    return a, b


async def moderator_on(server: Server):
    """The moderator, a JSON client on `server`, past its welcome and join."""
    token = manage(server, "issue_token", "mod")
    ws = await join(server, "Hall", None, format="json", token=token)
    assert (await recv_json(ws))["moderator"] is True
    assert (await recv_json(ws))["type"] == "join"
    return ws


async def reply(ws, **fields) -> dict:
    """Send a moderator's command; its reply, past room events."""
    await ws.send(orjson.dumps(fields).decode())
    while (event := await recv_json(ws))["type"] not in ("moderated", "error"):
        pass
    return event


async def next_of_type(ws, kind: str) -> dict:
    while (event := await recv_json(ws))["type"] != kind:
        pass
    return event


async def test_a_kick_on_one_process_closes_the_member_on_the_other(two_servers):
    a, b = two_servers
    mod = await moderator_on(a)
    nick = await join(b, "Hall", "Nick")
    assert await recv(nick) == "Nick joined Hall"
    assert (await recv_json(mod))["nickname"] == "Nick"
    assert (await reply(mod, type="kick", nickname="Nick", reason="off topic"))["action"] == "kick"
    code, frames = await read_until_closed(nick)
    assert (code, frames) == (
        4403,
        ["error KICKED: A moderator removed you from this room: off topic"],
    )
    assert (await next_of_type(mod, "leave"))["nickname"] == "Nick"
    again = await join(b, "Hall", "Nick")  # a kick holds nothing for later
    assert await recv(again) == "Nick joined Hall"
    await again.close()
    await mod.close()


async def test_a_ban_on_one_process_closes_the_member_and_every_process_refuses_it(two_servers):
    a, b = two_servers
    mod = await moderator_on(a)
    nick = await join(b, "Hall", "Nick")
    await recv(nick)
    done = await reply(mod, type="ban", nickname="Nick", seconds=600)
    assert done["until"] > 0
    code, frames = await read_until_closed(nick)
    assert code == 4403 and frames[0].startswith("error BANNED: You are banned from this room")
    for server in (b, a):
        again = await join(server, "Hall", "nick")
        code, frames = await read_until_closed(again)
        assert code == 4403 and frames[0].startswith("error BANNED:"), server
    assert (await reply(mod, type="unban", nickname="Nick"))["action"] == "unban"
    back = await join(b, "Hall", "Nick")
    assert await recv(back) == "Nick joined Hall"
    await back.close()
    await mod.close()


async def test_a_mute_on_one_process_silences_the_member_on_the_other(two_servers):
    a, b = two_servers
    mod = await moderator_on(a)
    nick = await join(b, "Hall", "Nick")
    await recv(nick)
    await reply(mod, type="mute", nickname="Nick", seconds=60)
    await asyncio.sleep(0.2)  # the mute travels through Redis as the reply comes back
    await nick.send("hello?")
    assert (await recv(nick)).startswith("error MUTED: You are muted in this room until")
    await mod.close()
    await nick.close()


async def test_a_deletion_on_one_process_reaches_pages_on_the_other_and_leaves_its_api(
    two_servers,
):
    a, b = two_servers
    mod = await moderator_on(a)
    nick = await join(b, "Hall", "Nick", format="json")
    await recv_json(nick), await recv_json(nick)
    await nick.send('{"type": "message", "text": "oops"}')
    await nick.send('{"type": "message", "text": "fine"}')
    oops = await next_of_type(nick, "message")
    await next_of_type(nick, "message")
    assert (await reply(mod, type="delete", id=oops["id"]))["id"] == oops["id"]
    event = await next_of_type(nick, "delete")
    assert (event["id"], event["nickname"]) == (oops["id"], "Nick")
    for server in (a, b):
        status, page = get_json(server, "/api/rooms/Hall/messages")
        assert [message["text"] for message in page["messages"]] == ["fine"]
    await mod.close()
    await nick.close()
