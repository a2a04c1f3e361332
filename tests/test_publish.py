"""Publishing from the project's own code: rooms.publish and rooms.apublish, in process
(through the ASGI application) and in real server processes; `manage.py post_message`."""

import asyncio
import os
import subprocess
import sys
import threading
from io import StringIO

import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

import rooms
from rooms.core import errors
from rooms.models import Message
from rooms.state.backends import get_writer
from tests.communicators import communicator
from tests.servers import BASE_ENV, ROOT


async def joined(room: str, nickname: str):
    """A JSON client in `room`, past its welcome and its own join."""
    ws = await communicator(room, nickname, format="json")
    assert orjson.loads(await ws.receive_from())["type"] == "welcome"
    assert orjson.loads(await ws.receive_from())["type"] == "join"
    return ws


async def test_apublish_reaches_members_with_the_rooms_next_id_and_is_stored():
    ws = await joined("Room1", "Nick")
    await ws.send_to('{"type": "message", "text": "hi"}')
    assert orjson.loads(await ws.receive_from())["id"] == 1
    message = await rooms.apublish("Room1", "deploy finished", nickname="deploybot")
    frame = orjson.loads(await ws.receive_from())
    assert frame == {
        "type": "message",
        "id": 2,
        "room": "Room1",
        "nickname": "deploybot",
        "text": "deploy finished",
        "ts": message.ts,
    }
    assert (message.id, message.room, message.nickname, message.text) == (
        2,
        "Room1",
        "deploybot",
        "deploy finished",
    )
    assert orjson.loads(message.frame()) == frame
    await get_writer().flush()
    stored = await database_sync_to_async(
        lambda: list(Message.objects.values_list("seq", "nickname", "text").order_by("seq"))
    )()
    assert stored == [(1, "Nick", "hi"), (2, "deploybot", "deploy finished")]
    await ws.disconnect()


async def test_publish_from_a_thread_or_a_sync_context_reaches_the_room_in_call_order():
    ws = await joined("Room1", "Nick")
    first = await sync_to_async(rooms.publish)("Room1", "from sync code")
    second = await asyncio.to_thread(rooms.publish, "Room1", "from a thread")
    results = []
    worker = threading.Thread(target=lambda: results.append(rooms.publish("Room1", "plain")))
    worker.start()
    await asyncio.to_thread(worker.join)
    assert [first.id, second.id, results[0].id] == [1, 2, 3]
    assert [orjson.loads(await ws.receive_from())["text"] for _ in range(3)] == [
        "from sync code",
        "from a thread",
        "plain",
    ]
    assert first.nickname == "server"
    await ws.disconnect()


async def test_publish_on_a_running_event_loop_points_at_apublish():
    with pytest.raises(RuntimeError, match=r"await rooms\.apublish"):
        rooms.publish("Room1", "blocked")


@pytest.mark.parametrize(
    ("room", "text", "nickname", "code"),
    [
        ("", "hi", "server", errors.ROOM_INVALID),
        ("a/b", "hi", "server", errors.ROOM_INVALID),
        ("Room1", "hi", "", errors.NICKNAME_REQUIRED),
        ("Room1", "hi", "\u202enimda", errors.NICKNAME_INVALID),
        ("Room1", "x" * 4097, "server", errors.MESSAGE_TOO_LONG),
        ("Room1", "bell\x07", "server", errors.TEXT_INVALID),
    ],
    ids=["empty-room", "slash", "no-nickname", "bidi-nickname", "too-long", "control"],
)
async def test_what_a_client_may_not_send_is_refused_with_its_code(room, text, nickname, code):
    ws = await joined("Room1", "Nick")
    with pytest.raises(rooms.PublishError) as refused:
        await rooms.apublish(room, text, nickname=nickname)
    assert refused.value.code == code
    with pytest.raises(rooms.PublishError) as refused:
        await sync_to_async(rooms.publish)(room, text, nickname=nickname)
    assert refused.value.code == code
    assert await ws.receive_nothing(0.2)
    await ws.disconnect()


def test_import_rooms_imports_nothing_else():
    script = (
        "import sys, rooms; "
        "assert not [m for m in sys.modules if m.startswith(('rooms.', 'django', 'channels'))]; "
        "print(rooms.__all__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "publish" in done.stdout


def test_post_message_refuses_what_a_client_may_not_send():
    with pytest.raises(CommandError, match="TEXT_INVALID"):
        call_command("post_message", "Room1", "bell\x07", stdout=StringIO())


def test_outside_a_server_the_in_memory_layer_cannot_publish(settings):
    settings.REDIS_URL = ""
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        rooms.publish("Room1", "nobody hears this")
    with pytest.raises(CommandError, match="REDIS_URL"):
        call_command("post_message", "Room1", "nobody hears this", stdout=StringIO())


def manage(database_url: str, *args: str, **env: str) -> str:
    """Run manage.py as an operator does, against a test server's database; its output."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **BASE_ENV, "DATABASE_URL": database_url, **env},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
