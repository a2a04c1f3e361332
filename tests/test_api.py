"""The HTTP API against a real server, on SQLite and on PostgreSQL."""

from urllib.parse import quote

import orjson
import pytest
from django.test import AsyncClient

from rooms.models import Message
from rooms.state.backends import get_writer
from tests.clients import get_json, join, recv, recv_json
from tests.test_history import communicator


@pytest.fixture
def database_url(any_database_url: str) -> str:
    """These tests run once on SQLite and once on PostgreSQL."""
    return any_database_url


async def test_rooms_members_and_message_pages_match_what_the_websocket_shows(
    start_server, database_url
):
    server = start_server("daphne")
    nick = await join(server, "Room1", "Nick", format="json")
    await recv_json(nick), await recv_json(nick)
    alex = await join(server, "Кухня 🍳", "Alex")
    await recv(alex)
    for n in range(7):
        await nick.send(orjson.dumps({"type": "message", "text": f"m{n}"}).decode())
    live = [await recv_json(nick) for _ in range(7)]

    status, body = get_json(server, "/api/rooms")
    assert status == 200
    assert [(room["name"], room["members"]) for room in body["rooms"]] == [
        ("Room1", 1),
        ("Кухня 🍳", 1),
    ]
    assert body["rooms"][0]["last_activity"] in (None, live[-1]["ts"])
    assert get_json(server, f"/api/rooms/{quote('Кухня 🍳')}/")[1] == {
        "name": "Кухня 🍳",
        "members": ["Alex"],
        "member_count": 1,
        "last_activity": None,
        "last_id": 0,
    }
    assert get_json(server, "/api/rooms/Room1/")[1]["last_id"] == 7

    pages, before = [], ""
    while True:
        status, page = get_json(server, f"/api/rooms/Room1/messages?limit=3{before}")
        assert status == 200 and page["room"] == "Room1"
        pages.append([message["id"] for message in page["messages"]])
        assert page["messages"] == live[pages[-1][0] - 1 : pages[-1][-1]]
        if page["next_before"] is None:
            break
        before = f"&before={page['next_before']}"
    assert pages == [[5, 6, 7], [2, 3, 4], [1]]
    assert get_json(server, "/api/rooms/Room1/messages")[1]["messages"] == live
    await nick.close()
    await alex.close()


BAD_REQUESTS = [
    ("/api/rooms/Nowhere/", 404, "ROOM_NOT_FOUND"),
    ("/api/rooms/Nowhere/messages", 404, "ROOM_NOT_FOUND"),
    (f"/api/rooms/{'r' * 101}/", 400, "ROOM_INVALID"),
    ("/api/rooms/Room1/messages?limit=0", 400, "PARAMETER_INVALID"),
    ("/api/rooms/Room1/messages?limit=201", 400, "PARAMETER_INVALID"),
    ("/api/rooms/Room1/messages?limit=ten", 400, "PARAMETER_INVALID"),
    ("/api/rooms/Room1/messages?before=0", 400, "PARAMETER_INVALID"),
    ("/api/rooms/Room1/messages?before=-3", 400, "PARAMETER_INVALID"),
    # The names the WebSocket handshake refuses: bidi, invisible, no letter or digit.
    *(
        (f"/api/rooms/{quote(room)}/{tail}", 400, "ROOM_INVALID")
        for room in ("\u202emoor", "Ro\u200bom", "\u3164", "🍳")
        for tail in ("", "messages")
    ),
]


async def test_bad_requests_get_a_clear_4xx_and_the_server_goes_on(start_server):
    server = start_server("daphne")
    nick = await join(server, "Room1", "Nick")
    await recv(nick)
    for path, status, code in BAD_REQUESTS:
        got, body = get_json(server, path)
        assert (path, got, body["error"]["code"]) == (path, status, code)
        assert body["error"]["message"]
    await nick.send("still here")
    assert await recv(nick) == "Nick: still here"
    await nick.close()


async def test_a_room_is_found_under_any_canonically_equivalent_spelling(start_server):
    server = start_server("daphne")
    nick = await join(server, "Cafe\u0301", "Nick")  # NFD: the room is "Café"
    assert await recv(nick) == "Nick joined Café"
    await nick.send("bonjour")
    assert await recv(nick) == "Nick: bonjour"
    for spelling in ("Café", "Cafe\u0301"):
        status, room = get_json(server, f"/api/rooms/{quote(spelling)}/")
        assert (status, room["name"], room["members"]) == (200, "Café", ["Nick"])
        _, page = get_json(server, f"/api/rooms/{quote(spelling)}/messages")
        assert [message["text"] for message in page["messages"]] == ["bonjour"]
    _, rooms = get_json(server, "/api/rooms")
    assert [room["name"] for room in rooms["rooms"]] == ["Café"]
    await nick.close()


async def test_a_moderator_deletes_a_message_and_no_one_is_shown_it_again(admin_user):
    nick = await communicator("Room1", "Nick")
    await nick.receive_from()
    for text in ("fine", "rude", "fine too"):
        await nick.send_to(text)
        await nick.receive_from()
    await get_writer().flush()
    rude = await Message.objects.aget(text="rude")
    moderator = AsyncClient()
    await moderator.aforce_login(admin_user)
    response = await moderator.post(
        "/admin/rooms/message/", {"action": "delete_messages", "_selected_action": [rude.pk]}
    )
    assert response.status_code == 302
    page = orjson.loads((await moderator.get("/api/rooms/Room1/messages")).content)
    assert [message["text"] for message in page["messages"]] == ["fine", "fine too"]
    late = await communicator("Room1", "Late", history="5")
    assert [await late.receive_from() for _ in range(3)] == [
        "Nick: fine",
        "Nick: fine too",
        "Late joined Room1",
    ]
    await nick.disconnect()
    await late.disconnect()
