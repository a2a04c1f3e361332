"""The web pages' HTTP side: lobby, join form, room page, and static files in production."""

import re
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.servers import collect_static

ROOT = Path(__file__).resolve().parent.parent
PAGE_FILES = [
    *sorted((ROOT / "rooms" / "templates").rglob("*.html")),
    *sorted((ROOT / "rooms" / "static").rglob("*.*")),
]


@pytest.fixture(autouse=True)
def static_root(settings, tmp_path: Path) -> None:
    """An existing, empty STATIC_ROOT: the in-process pages need no static files served."""
    settings.STATIC_ROOT = tmp_path


def test_lobby_offers_the_join_form_and_the_room_list(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<form class="join-form" method="get" action="/chat/" id="join-form">' in html
    assert 'name="nickname"' in html and 'maxlength="32"' in html
    assert 'name="room"' in html and 'maxlength="100"' in html
    assert '<ul id="rooms"></ul>' in html
    assert re.search(r'<script src="/static/rooms/lobby[.\w]*js" defer>', html)


def test_join_form_sends_the_browser_to_the_rooms_own_address(client):
    response = client.get("/chat/", {"room": " Кухня 🍳 ", "nickname": " Élodie "})
    assert response.status_code == 302
    assert response["Location"] == f"/chat/{quote('Кухня 🍳', safe='')}/?nickname=%C3%89lodie"


@pytest.mark.parametrize(
    ("room", "nickname", "explanation"),
    [
        ("", "Nick", "Room names are 1 to 100 printable characters, without &#x27;/&#x27;."),
        ("a/b", "Nick", "Room names are 1 to 100 printable characters, without &#x27;/&#x27;."),
        ("Room1", "", "No nickname specified."),
        ("Room1", "N" * 33, "Nicknames are 1 to 32 printable characters."),
        (
            "Room1",
            "\u202enimda",
            "Nicknames cannot contain invisible, control, unassigned or direction-changing "
            "characters (found U+202E).",
        ),
        (
            "Room1",
            "\u3164",
            "Nicknames cannot contain invisible, control, unassigned or "
            "direction-changing characters (found U+3164).",
        ),  # fmt: skip
        (
            "Ro\u200bom",
            "Nick",
            "Room names cannot contain invisible, control, unassigned or "
            "direction-changing characters (found U+200B).",
        ),  # fmt: skip
        ("🍳", "Nick", "Room names need at least one letter or digit."),
    ],
)
def test_join_form_with_an_invalid_room_or_nickname_says_why_and_keeps_the_values(
    client, room, nickname, explanation
):
    response = client.get("/chat/", {"room": room, "nickname": nickname})
    assert response.status_code == 400
    html = response.content.decode()
    assert f'<p class="alert" role="alert" id="form-error">{explanation}</p>' in html
    assert f'value="{nickname}"' in html


def test_room_page_shows_the_room_name_as_text(client):
    response = client.get(f"/chat/{quote('<b>R&D', safe='')}/", {"nickname": '"><i>x'})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<title>&lt;b&gt;R&amp;D · rooms</title>" in html
    assert 'title="&lt;b&gt;R&amp;D"><bdi>&lt;b&gt;R&amp;D</bdi></h1>' in html
    assert "Your nickname in <bdi>&lt;b&gt;R&amp;D</bdi>" in html
    assert '"\\u003Cb\\u003ER\\u0026D"</script>' in html
    assert '"\\"\\u003E\\u003Ci\\u003Ex"</script>' in html
    assert "<b>" not in html and "<i>" not in html


def test_join_form_sends_an_nfd_room_name_to_its_nfc_address(client):
    response = client.get("/chat/", {"room": "Cafe\u0301", "nickname": "Nick"})
    assert response.status_code == 302
    assert response["Location"] == f"/chat/{quote('Café', safe='')}/?nickname=Nick"


def test_room_page_for_an_invalid_room_name_is_refused_with_a_reason(client):
    response = client.get(f"/chat/{'x' * 101}/")
    assert response.status_code == 400
    assert "Room names are 1 to 100 printable characters" in response.content.decode()


@pytest.mark.parametrize("path", [path.relative_to(ROOT) for path in PAGE_FILES], ids=str)
def test_page_files_load_nothing_from_other_sites(path):
    text = (ROOT / path).read_text()
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import", text, re.IGNORECASE)


def _get(url: str, **headers: str) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def test_production_server_serves_collected_static_files_cached_and_compressed(
    start_server, tmp_path
):
    collected = collect_static(tmp_path / "collected")
    server = start_server("daphne", STATIC_ROOT=str(collected))
    status, _, body = _get(server.http("/"))
    assert status == 200
    stylesheet = re.search(r'href="(/static/rooms/rooms\.[0-9a-f]{12}\.css)"', body.decode())
    assert stylesheet, "the stylesheet's URL carries its content hash"

    status, headers, css = _get(server.http(stylesheet[1]))
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert "immutable" in headers["Cache-Control"]
    assert css == (ROOT / "rooms" / "static" / "rooms" / "rooms.css").read_bytes()

    status, headers, _ = _get(server.http(stylesheet[1]), **{"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
