"""Publishing from the project's own code: rooms.publish and rooms.apublish, in process
(through the ASGI application) and in real server processes; `manage.py post_message`."""

import asyncio
import http.cookiejar
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from io import StringIO
from urllib.parse import quote, urlencode

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
from rooms.web import posting
from tests.clients import assert_silent, get_json, join, recv_json, wait_until
from tests.communicators import communicator
from tests.servers import BASE_ENV, ROOT, collect_static


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


async def test_a_message_delivered_to_members_is_stored_even_if_its_publisher_gives_up():
    ws = await joined("Room1", "Nick")
    for turns in range(6):  # cancelled at every step of the way, before and after the id
        task = asyncio.ensure_future(rooms.apublish("Room1", f"try {turns}"))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.2)
    seen = []
    while not await ws.receive_nothing(0.1):
        seen.append(orjson.loads(await ws.receive_from())["text"])
    await get_writer().flush()
    stored = await database_sync_to_async(
        lambda: list(Message.objects.values_list("text", flat=True).order_by("seq"))
    )()
    assert stored == seen
    await ws.disconnect()


async def test_publish_from_a_thread_or_a_sync_context_reaches_the_room_in_call_order():
    ws = await joined("Room1", "Nick")
    first = await sync_to_async(rooms.publish)("Room1", "from sync code")
    second = await asyncio.to_thread(rooms.publish, "Room1", "from a thread")
    results = []
    worker = threading.Thread(target=lambda: results.append(rooms.publish("Room1", "plain")))
    worker.start()
    await asyncio.to_thread(worker.join)
    other_loop = await asyncio.to_thread(asyncio.run, rooms.apublish("Room1", "another loop"))
    assert [first.id, second.id, results[0].id, other_loop.id] == [1, 2, 3, 4]
    assert [orjson.loads(await ws.receive_from())["text"] for _ in range(4)] == [
        "from sync code",
        "from a thread",
        "plain",
        "another loop",
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


def test_every_answer_of_the_post_api_is_documented():
    reference = (ROOT / "docs" / "api.md").read_text()
    described = (ROOT / "docs" / "openapi.yaml").read_text()
    for code, status in posting._STATUS.items():
        assert f"`{code}`" in reference and code in described, code
        assert f"| {status} |" in reference and f'"{status}"' in described, status


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


# Real server processes


def request(server, path: str, body: bytes | None = None, headers=(), opener=None):
    """An HTTP request to a live server: status, headers and JSON body, errors included."""
    opener = opener or urllib.request.build_opener()
    req = urllib.request.Request(server.http(path), data=body, headers=dict(headers))
    try:
        with opener.open(req, timeout=10) as response:
            return response.status, response.headers, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, orjson.loads(error.read())


def post(server, room: str, payload, token: str | None = None, opener=None, headers=()):
    """POST a message to the API: status and JSON body."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    sent = {"Content-Type": "application/json", **dict(headers)}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    status, _, answer = request(server, f"/api/rooms/{quote(room)}/messages", body, sent, opener)
    return status, answer


def add_user(database_url: str, name: str, staff: bool = False) -> str:
    """A user in the server's database, with a token (manage.py issue_token)."""
    manage(
        database_url,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"User.objects.create_user({name!r}, password='pw', is_staff={staff})",
    )
    return manage(database_url, "issue_token", name)


async def test_a_sync_view_publishes_directly_on_commit_and_from_a_thread(start_server):
    server = start_server("serve", DJANGO_SETTINGS_MODULE="tests.publishing_settings")
    ws = await join(server, "Room1", "Nick", format="json")
    await recv_json(ws), await recv_json(ws)
    status, _, body = await asyncio.to_thread(request, server, "/test/publish/Room1/")
    assert (status, body) == (200, {"ids": [1, 2, 3]})
    seen = [await recv_json(ws) for _ in range(3)]
    assert [(m["id"], m["nickname"], m["text"]) for m in seen] == [
        (1, "server", "from a view"),
        (2, "bot", "on commit"),
        (3, "server", "from a thread"),
    ]
    stored = await wait_until(
        lambda: get_json(server, "/api/rooms/Room1/messages")[1].get("messages", []),
        lambda messages: len(messages) == 3,
    )
    assert stored == seen
    await ws.close()


@pytest.mark.redis
async def test_on_redis_posts_to_two_processes_and_the_command_reach_both_in_one_order(
    start_server, redis_env, database_url
):
    env = {**redis_env, "CHANNEL_LAYER": "redis-pubsub"}
    a, b = start_server("serve", **env), start_server("serve", **env)
    token = add_user(database_url, "ann")
    on_a = await join(a, "Room1", "Nick", format="json")
    on_b = await join(b, "Room1", "Alex", format="json")
    await recv_json(on_a), await recv_json(on_a), await recv_json(on_a)  # welcome, 2 joins
    await recv_json(on_b), await recv_json(on_b)

    def posts(server, label: str) -> list[int]:
        answers = [post(server, "Room1", {"text": f"{label}{n}"}, token) for n in range(10)]
        assert all(status == 201 for status, _ in answers), answers
        return [body["id"] for _, body in answers]

    command = asyncio.to_thread(
        manage, database_url, "post_message", "Room1", "from cron", "--as", "cron", **env
    )
    ids_a, ids_b, command_id = await asyncio.gather(
        asyncio.to_thread(posts, a, "a"), asyncio.to_thread(posts, b, "b"), command
    )
    assert sorted(ids_a + ids_b + [int(command_id)]) == list(range(1, 22))
    seen_a = [await recv_json(on_a) for _ in range(21)]
    seen_b = [await recv_json(on_b) for _ in range(21)]
    assert seen_a == seen_b
    assert [m["id"] for m in seen_a] == list(range(1, 22))
    assert {m["nickname"] for m in seen_a} == {"ann", "cron"}
    stored = await wait_until(
        lambda: get_json(b, "/api/rooms/Room1/messages")[1]["messages"],
        lambda messages: len(messages) == 21,
    )
    assert stored == seen_a
    await on_a.close(), await on_b.close()


def sanction(database_url: str, room: str, name: str, kind: str) -> None:
    """A ban or mute of the user `name` in `room` for an hour, as a moderator's would be."""
    manage(
        database_url,
        "shell",
        "-c",
        "from datetime import timedelta; from django.contrib.auth.models import User; "
        "from django.utils import timezone; from rooms.core.names import nickname_key; "
        "from rooms.models import Room, Sanction; "
        f"room = Room.objects.get_or_create(name={room!r}, "
        "defaults={'last_activity': timezone.now()})[0]; "
        f"user = User.objects.get(username={name!r}); "
        f"Sanction.objects.create(room=room, kind={kind!r}, nickname={name!r}, "
        f"nickname_key=nickname_key({name!r}), user=user, "
        "until=timezone.now() + timedelta(hours=1))",
    )


def signed_in(server, name: str) -> tuple[urllib.request.OpenerDirector, str]:
    """A browser's session: signed in through the login page; its CSRF token."""
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    browser.open(server.http("/accounts/login/"), timeout=10).read()
    form = {"username": name, "password": "pw", "csrfmiddlewaretoken": _cookie(jar, "csrftoken")}
    browser.open(server.http("/accounts/login/"), urlencode(form).encode(), timeout=10).read()
    assert _cookie(jar, "sessionid")
    return browser, _cookie(jar, "csrftoken")


def _cookie(jar: http.cookiejar.CookieJar, name: str) -> str:
    return next((cookie.value for cookie in jar if cookie.name == name), "")


async def test_the_post_api_answers_each_case_with_its_status_and_code(
    start_server, database_url, tmp_path
):
    static = str(collect_static(tmp_path / "static"))  # the login page's
    server = start_server("serve", RATE_LIMIT="0.2", RATE_BURST="12", STATIC_ROOT=static)
    ann, eve = add_user(database_url, "ann"), add_user(database_url, "eve")
    add_user(database_url, "boss", staff=True)
    manage(database_url, "room_access", "Vault", "--private")
    muted, banned = add_user(database_url, "mia"), add_user(database_url, "ben")
    sanction(database_url, "Room1", "mia", "mute")
    sanction(database_url, "Room1", "ben", "ban")
    ws = await join(server, "Room1", "Nick", format="json")  # the server reads them now
    await recv_json(ws), await recv_json(ws)

    status, headers, body = await asyncio.to_thread(
        request,
        server,
        "/api/rooms/Room1/messages",
        b'{"text": "hello"}',
        {"Authorization": f"Bearer {ann}", "Content-Type": "application/json"},
    )
    assert (status, body["nickname"], body["text"], body["id"]) == (201, "ann", "hello", 1)
    assert await recv_json(ws) == body
    status, _, page = await asyncio.to_thread(request, server, headers["Location"])
    assert page["messages"] == [body]

    refused = {
        "no credentials": post(server, "Room1", {"text": "x"}),
        "forged token": post(server, "Room1", {"text": "x"}, "forged"),
        "not JSON": post(server, "Room1", b"{text", ann),
        "no text": post(server, "Room1", {"txt": "x"}, ann),
        "control character": post(server, "Room1", {"text": "\x1b[2J"}, ann),
        "too long": post(server, "Room1", {"text": "x" * 4097}, ann),
        "bad room": post(server, " ", {"text": "x"}, ann),
        "another's name": post(server, "Room1", {"text": "x", "nickname": "boss"}, ann),
        "private room": post(server, "Vault", {"text": "x"}, ann),
        "body too large": post(server, "Room1", b" " * 200_000, ann),
        "muted": post(server, "Room1", {"text": "x"}, muted),
        "banned": post(server, "Room1", {"text": "x"}, banned),
    }
    assert {case: (status, body["error"]["code"]) for case, (status, body) in refused.items()} == {
        "no credentials": (401, errors.AUTH_REQUIRED),
        "forged token": (401, errors.TOKEN_INVALID),
        "not JSON": (400, errors.JSON_INVALID),
        "no text": (400, errors.PARAMETER_INVALID),
        "control character": (400, errors.TEXT_INVALID),
        "too long": (400, errors.MESSAGE_TOO_LONG),
        "bad room": (400, errors.ROOM_INVALID),
        "another's name": (403, errors.NICKNAME_NOT_YOURS),
        "private room": (403, errors.ROOM_FORBIDDEN),
        "body too large": (413, errors.MESSAGE_TOO_LONG),
        "muted": (403, errors.MUTED),
        "banned": (403, errors.BANNED),
    }
    # Every post costs a token, refused or not: ann has spent 10 of her 12 above.
    answers = [post(server, "Room1", {"text": f"spam {n}"}, eve)[0] for n in range(13)]
    assert answers == [201] * 12 + [429]

    boss, csrf = await asyncio.to_thread(signed_in, server, "boss")
    no_csrf = post(server, "Room1", {"text": "x"}, opener=boss)
    assert (no_csrf[0], no_csrf[1]["error"]["code"]) == (403, errors.FORBIDDEN)

    def by_boss(payload: dict) -> tuple[int, dict]:
        return post(server, "Room1", payload, opener=boss, headers={"X-CSRFToken": csrf})

    as_boss = by_boss({"text": "hi all"})
    named = by_boss({"text": "maintenance at 22:00", "nickname": "Announcements"})
    reserved = by_boss({"text": "x", "nickname": "ann"})
    assert (as_boss[0], as_boss[1]["nickname"]) == (201, "boss")
    assert (named[0], named[1]["nickname"]) == (201, "Announcements")
    assert (reserved[0], reserved[1]["error"]["code"]) == (403, errors.NICKNAME_RESERVED)
    annie, _ = await asyncio.to_thread(signed_in, server, "ann")
    not_staff = post(server, "Room1", {"text": "x"}, opener=annie)
    assert (not_staff[0], not_staff[1]["error"]["code"]) == (403, errors.FORBIDDEN)
    empty_token = {"Authorization": "Bearer "}  # never the session instead of a token
    no_token = post(server, "Room1", {"text": "x"}, opener=annie, headers=empty_token)
    assert (no_token[0], no_token[1]["error"]["code"]) == (401, errors.TOKEN_INVALID)

    seen = [await recv_json(ws) for _ in range(14)]
    assert [(m["id"], m["nickname"], m["text"]) for m in seen] == [
        *[(n + 2, "eve", f"spam {n}") for n in range(12)],
        (14, "boss", "hi all"),
        (15, "Announcements", "maintenance at 22:00"),
    ]
    await assert_silent(ws)
    await ws.close()
