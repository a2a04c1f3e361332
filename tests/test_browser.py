"""The web chat page in real headless Chromium (Debian's) against a real Daphne process.

Async Playwright: the sync API holds an event loop open for as long as the browser lives,
which the suite's async fixtures cannot share.
"""

import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from tests.servers import Server, collect_static

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "screenshot.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

expect.set_options(timeout=10_000)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the module; each person gets a context (own storage) of their own."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Static files collected the way a deployment collects them."""
    return collect_static(tmp_path_factory.mktemp("static"))


@pytest.fixture
def server(start_server, static_root: Path) -> Server:
    """Daphne with DEBUG off, serving the collected static files through WhiteNoise."""
    return start_server("daphne", STATIC_ROOT=str(static_root))


class Visitor:
    """One person's browser tab; fails on script errors, dialogs, requests off this machine."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    async def open(self, browser: Browser, viewport: dict) -> Page:
        self.context = await browser.new_context(viewport=viewport)
        await self.context.route("**/*", self.only_this_machine)
        page = await self.context.new_page()
        page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        page.on("dialog", lambda dialog: self.problems.append(f"dialog: {dialog.message}"))
        return page

    async def only_this_machine(self, route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            self.problems.append(f"outside request: {route.request.url}")
            await route.abort()


@pytest_asyncio.fixture(loop_scope="module")
async def visit(browser: Browser) -> AsyncIterator:
    """Open tabs as different people; no tab may have met a problem by the end."""
    visitors: list[Visitor] = []

    async def open_tab(viewport: dict = LAPTOP) -> Page:
        visitor = Visitor()
        visitors.append(visitor)
        return await visitor.open(browser, viewport)

    yield open_tab
    for visitor in visitors:
        await visitor.context.close()
    assert [problem for visitor in visitors for problem in visitor.problems] == []


def room_url(server: Server, room: str, nickname: str | None = None) -> str:
    query = f"?nickname={quote(nickname)}" if nickname is not None else ""
    return server.http(f"/chat/{quote(room, safe='')}/{query}")


async def enter_room(page: Page, server: Server, room: str, nickname: str) -> Page:
    await page.goto(room_url(server, room, nickname))
    await expect(page.locator("#status")).to_have_text("Connected")
    return page


async def say(page: Page, text: str) -> None:
    await page.locator("#input").fill(text)
    await page.locator("#input").press("Enter")


async def expect_messages(page: Page, expected: list[tuple[str, str]]) -> None:
    """The page shows exactly these (nickname, text) messages, in order."""
    await expect(page.locator(".message .text")).to_have_text([text for _, text in expected])
    await expect(page.locator(".message .nick")).to_have_text([nick for nick, _ in expected])


@pytest.mark.parametrize("kind", ["daphne", "fast"])
async def test_two_people_see_each_other_join_talk_both_ways_and_leave(
    visit, start_server, static_root, kind
):
    server = start_server(kind, STATIC_ROOT=str(static_root))
    nick = await visit()
    await nick.goto(server.http("/"))
    await nick.locator("#nickname").fill("Nick")
    await nick.locator("#room").fill("Room1")
    await nick.locator("#join-form button").click()
    await expect(nick).to_have_url(room_url(server, "Room1", "Nick"))
    await expect(nick.locator("#status")).to_have_text("Connected")
    await expect(nick.locator(".notice span")).to_have_text(["You joined Room1 as Nick."])

    alex = await enter_room(await visit(), server, "Room1", "Alex")
    await expect(nick.locator(".notice span")).to_have_text(
        ["You joined Room1 as Nick.", "Alex joined"]
    )
    await expect(alex.locator(".notice span")).to_have_text(["You joined Room1 as Alex."])
    for page in (nick, alex):
        await expect(page.locator("#members li")).to_have_text(["Alex", "Nick"])
        await expect(page.locator("#member-count")).to_have_text("(2)")

    await say(nick, "Hello from Nick")
    await expect_messages(alex, [("Nick", "Hello from Nick")])
    await say(alex, "Hi Nick, Alex here")
    conversation = [("Nick", "Hello from Nick"), ("Alex", "Hi Nick, Alex here")]
    await expect_messages(nick, conversation)
    await expect_messages(alex, conversation)
    await expect(nick.locator("#input")).to_have_value("")
    await expect(nick.locator(".message.mine .text")).to_have_text(["Hello from Nick"])
    await expect(alex.locator(".message.mine .text")).to_have_text(["Hi Nick, Alex here"])
    stamp = nick.locator(".message time").first
    await expect(stamp).to_have_text(re.compile(r"^\d{1,2}:\d\d"))
    await expect(stamp).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))

    await alex.context.close()
    await expect(nick.locator(".notice span")).to_have_text(
        ["You joined Room1 as Nick.", "Alex joined", "Alex left the room"]
    )
    await expect(nick.locator("#members li")).to_have_text(["Nick"])
    await expect_messages(nick, conversation)


async def test_a_room_with_a_few_messages_looks_tidy_in_the_readme_screenshot(
    visit, server, tmp_path
):
    nick = await enter_room(await visit(), server, "Room1", "Nick")
    alex = await enter_room(await visit(), server, "Room1", "Alex")
    lines = [
        (alex, "Morning! Is the deploy still on for today?"),
        (nick, "Yes, after lunch. The migration ran fine on staging."),
        (alex, "Great. I'll keep an eye on the dashboards."),
        (nick, "Thanks! Multi-line works too:\n1. build\n2. migrate\n3. switch traffic"),
    ]
    for page, text in lines:
        await say(page, text)
    await expect(nick.locator(".message")).to_have_count(len(lines))
    await nick.locator("#input").fill("Sounds good")
    shot = tmp_path / "room.png"
    await nick.screenshot(path=shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The README's picture is replaced only on request: its timestamps differ every run.
    if os.environ.get("UPDATE_SCREENSHOT") or not SCREENSHOT.exists():
        shutil.copyfile(shot, SCREENSHOT)


async def test_html_in_a_nickname_room_or_message_shows_as_text(visit, server):
    room = '<i>R&D" <b>lab'
    nickname = "<img src=x onerror=alert(1)>"
    text = '<script>window.pwned = 1</script><b onmouseover="alert(2)">bold?</b> &amp;'
    alex = await enter_room(await visit(), server, room, "Alex")
    evil = await enter_room(await visit(), server, room, nickname)
    await expect(alex.locator(".notice span").last).to_have_text(f"{nickname} joined")
    await say(evil, text)
    markup = "body img, body b, body i, script:not([src]):not([type='application/json'])"
    for page in (alex, evil):
        await expect_messages(page, [(nickname, text)])
        await expect(page.locator("#room-name")).to_have_text(room)
        assert await page.title() == f"{room} · rooms"
        assert await page.locator(markup).count() == 0
        assert await page.evaluate("window.pwned") is None
    await expect(evil.locator("#me")).to_have_text(f"as {nickname}")


async def test_every_name_a_user_chose_is_shown_inside_bdi(visit, server):
    room, dana = "חדר 1", "דנה"  # right-to-left names: unisolated, they reorder the words around
    alex = await enter_room(await visit(), server, room, "Alex")
    other = await enter_room(await visit(), server, room, dana)
    await say(other, "shalom")
    await expect_messages(alex, [(dana, "shalom")])
    assert await alex.locator(".message .nick").evaluate("nick => nick.tagName") == "BDI"
    await expect(alex.locator(".notice span")).to_have_text(
        [f"You joined {room} as Alex.", f"{dana} joined"]
    )
    await expect(alex.locator(".notice span bdi")).to_have_text([room, "Alex", dana])
    await expect(alex.locator("#members li > bdi")).to_have_text(["Alex", dana])
    await expect(alex.locator("#room-name > bdi")).to_have_text(room)
    await expect(alex.locator("#me > bdi")).to_have_text("Alex")
    await other.context.close()
    await expect(alex.locator('.notice[data-kind="leave"] span > bdi')).to_have_text([dana])
    lobby = await visit()
    await lobby.goto(server.http("/"))
    await expect(lobby.locator("#rooms bdi.room-name")).to_have_text([room])


async def test_the_page_reconnects_after_the_server_restarts_without_losing_or_repeating(
    visit, server
):
    nick = await enter_room(await visit(), server, "Room1", "Nick")
    alex = await enter_room(await visit(), server, "Room1", "Alex")
    await say(nick, "before the restart")
    await expect_messages(alex, [("Nick", "before the restart")])

    server.restart()
    for page in (nick, alex):
        await expect(page.locator('.notice[data-kind="drop"]')).to_have_count(1)
        await expect(page.locator('.notice[data-kind="self"] span').last).to_have_text(
            "Reconnected.", timeout=20_000
        )
        await expect(page.locator("#status")).to_have_text("Connected")

    await say(alex, "after the restart")
    conversation = [("Nick", "before the restart"), ("Alex", "after the restart")]
    await expect_messages(nick, conversation)
    await expect_messages(alex, conversation)


async def test_an_invalid_nickname_is_explained_and_a_new_one_can_be_chosen(visit, server):
    page = await visit()
    await page.goto(room_url(server, "Room1", "N" * 33))
    await expect(page.locator("#alert")).to_have_text(
        "That nickname can't be used. Nicknames are 1 to 32 printable characters."
    )
    await expect(page.locator("#status")).to_have_text("Not connected")
    await expect(page.locator("#input")).to_be_disabled()
    await expect(page.locator("#nick-input")).to_have_value("N" * 33)
    await page.locator("#nick-input").fill("Nick")
    await page.locator("#nick-form button").click()
    await expect(page.locator("#status")).to_have_text("Connected")
    await expect(page.locator("#alert")).to_be_hidden()
    await expect(page).to_have_url(room_url(server, "Room1", "Nick"))


async def test_a_page_without_a_nickname_asks_for_one(visit, server):
    page = await visit()
    await page.goto(room_url(server, "Room1"))
    await expect(page.locator("#nick-form")).to_be_visible()
    await expect(page.locator("#status")).to_have_text("Not connected")
    await page.locator("#nick-input").fill("Alex")
    await page.locator("#nick-input").press("Enter")
    await expect(page.locator("#status")).to_have_text("Connected")
    await expect(page.locator(".notice span")).to_have_text(["You joined Room1 as Alex."])


async def test_a_too_long_message_is_refused_in_the_page_and_kept_for_editing(
    visit, start_server, static_root
):
    server = start_server("daphne", STATIC_ROOT=str(static_root), MAX_MESSAGE_LENGTH="10")
    nick = await enter_room(await visit(), server, "Room1", "Nick")
    alex = await enter_room(await visit(), server, "Room1", "Alex")
    await say(nick, "😀" * 11)
    await expect(nick.locator("#hint")).to_have_text(
        "Your message is too long: 11 characters, at most 10."
    )
    await expect(nick.locator("#input")).to_have_value("😀" * 11)
    await say(nick, "😀" * 10)  # ten characters, twenty UTF-16 units: the server counts ten
    await expect_messages(alex, [("Nick", "😀" * 10)])
    await expect_messages(nick, [("Nick", "😀" * 10)])
    await expect(nick.locator("#hint")).to_have_text("")


async def test_a_taken_nickname_is_explained_and_another_can_be_chosen(visit, server):
    alex = await enter_room(await visit(), server, "Room1", "Alex")
    second = await visit()
    await second.goto(room_url(server, "Room1", "Alex"))
    await expect(second.locator("#alert")).to_contain_text(
        "That nickname is already taken in this room."
    )
    await expect(second.locator("#status")).to_have_text("Not connected")
    await expect(second.locator("#nick-form")).to_be_visible()
    await second.locator("#nick-input").fill("Alex 2")
    await second.locator("#nick-input").press("Enter")
    await expect(second.locator("#status")).to_have_text("Connected")
    await expect(alex.locator(".notice span")).to_have_text(
        ["You joined Room1 as Alex.", "Alex 2 joined"]
    )


async def test_a_rate_limited_page_says_so_and_comes_back(visit, start_server, static_root):
    server = start_server("daphne", STATIC_ROOT=str(static_root), RATE_LIMIT="0.2", RATE_BURST="2")
    nick = await enter_room(await visit(), server, "Room1", "Nick")
    for n in range(3):
        await say(nick, f"flood {n}")
    await expect(nick.locator('.notice[data-kind="drop"] span')).to_have_text(
        ["You are sending messages too fast. Too many frames: at most 0.2 a second on average."]
    )
    await expect(nick.locator("#status")).to_have_text(re.compile(r"^Reconnecting in [5-7] s$"))
    await expect(nick.locator('.notice[data-kind="self"] span').last).to_have_text(
        "Reconnected.", timeout=15_000
    )
    await expect_messages(nick, [("Nick", "flood 0"), ("Nick", "flood 1")])


async def test_a_page_over_its_address_connection_limit_says_so_and_joins_once_one_closes(
    visit, start_server, static_root
):
    server = start_server("daphne", STATIC_ROOT=str(static_root), MAX_CONNECTIONS_PER_IP="1")
    nick = await enter_room(await visit(), server, "Room1", "Nick")
    alex = await visit()
    await alex.goto(room_url(server, "Room1", "Alex"))
    await expect(alex.locator("#alert")).to_have_text(
        "Too many chat connections are open from your network. Too many connections from "
        "your address (at most 1); close one or try again later."
    )
    await expect(alex.locator("#status")).to_have_text(re.compile(r"^Reconnecting in [5-7] s$"))
    await nick.close()
    await expect(alex.locator("#status")).to_have_text("Connected", timeout=15_000)


async def test_the_lobby_lists_active_rooms_with_member_counts(visit, server):
    lobby = await visit()
    await lobby.goto(server.http("/"))
    await expect(lobby.locator("#rooms-status")).to_have_text(
        "No active rooms right now. Start one above."
    )
    await enter_room(await visit(), server, "Room1", "Nick")
    await enter_room(await visit(), server, "Room1", "Alex")
    await enter_room(await visit(), server, "<b>Kitchen", "Bob")
    await lobby.reload()
    await expect(lobby.locator("#rooms .room-name")).to_have_text(["Room1", "<b>Kitchen"])
    await expect(lobby.locator("#rooms .room-count")).to_have_text(["2 members", "1 member"])
    await expect(lobby.locator("#rooms-status")).to_be_hidden()

    await lobby.locator("#nickname").fill("Carol")
    await lobby.locator("#rooms .room-link").last.click()
    await expect(lobby).to_have_url(room_url(server, "<b>Kitchen", "Carol"))
    await expect(lobby.locator("#status")).to_have_text("Connected")


async def test_the_room_fits_a_phone_screen(visit, server, tmp_path):
    room = "A rather long room name for a phone"
    nick = await enter_room(await visit(PHONE), server, room, "Nick")
    alex = await enter_room(await visit(), server, room, "Alex")
    await say(alex, "x" * 300)  # one unbroken word wider than the screen
    await say(nick, "Short reply")
    await expect(nick.locator(".message")).to_have_count(2)
    assert await nick.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for selector in ("#input", "#send", "#status", "#members-panel"):
        box = await nick.locator(selector).bounding_box()
        assert box is not None, selector
        assert 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"], selector
        assert 0 <= box["y"] and box["y"] + box["height"] <= PHONE["height"], selector
    await nick.screenshot(path=tmp_path / "phone.png")


async def test_a_server_shutting_down_is_announced_and_the_page_comes_back(
    visit, start_server, static_root, launcher
):
    server = start_server(launcher, STATIC_ROOT=str(static_root))
    nick = await enter_room(await visit(), server, "Room1", "Nick")
    server.restart()
    await expect(nick.locator('.notice[data-kind="drop"] span')).to_have_text(
        ["The server is going away (restarting or shutting down)."]
    )
    await expect(nick.locator('.notice[data-kind="self"] span').last).to_have_text(
        "Reconnected.", timeout=20_000
    )
    await expect(nick.locator("#status")).to_have_text("Connected")


def manage(server: Server, *args: str) -> None:
    """A management command against the server's own database."""
    subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=server.env, check=True, timeout=60
    )


async def test_a_user_signs_in_joins_a_private_room_under_their_name_and_others_are_refused(
    visit, server
):
    manage(server, "shell", "-c", CREATE_ANN)
    manage(server, "room_access", "Vault", "--private", "--add-member", "ann")
    ann = await visit()
    await ann.goto(server.http("/"))
    await ann.locator("#account a").click()
    await ann.locator("#username").fill("ann")
    await ann.locator("#password").fill("correct horse")
    await ann.locator("#login-form button").click()
    await expect(ann.locator("#account")).to_contain_text("Signed in as ann.")
    await expect(ann.locator("#nickname")).to_have_count(0)  # the account's name is used
    await ann.locator("#room").fill("Vault")
    await ann.locator("#join-form button").click()
    await expect(ann.locator("#status")).to_have_text("Connected")
    await expect(ann.locator(".notice span")).to_have_text(["You joined Vault as ann."])

    bob = await visit()
    await bob.goto(room_url(server, "Vault", "Bob"))
    await expect(bob.locator("#alert")).to_contain_text("This room is private.")
    await expect(bob.locator("#status")).to_have_text("Not connected")
    await expect(ann.locator(".notice span")).to_have_text(["You joined Vault as ann."])

    await ann.goto(server.http("/"))
    await ann.locator("#account button").click()  # sign out
    await expect(ann.locator("#account")).to_contain_text("Sign in")


CREATE_ANN = (
    "from django.contrib.auth.models import User; "
    "User.objects.create_user('ann', password='correct horse')"
)


async def test_a_moderator_deletes_a_message_and_it_disappears_from_another_members_page(
    visit, server
):
    manage(server, "shell", "-c", CREATE_ANN)
    manage(server, "room_access", "Hall", "--add-moderator", "ann")
    ann = await visit()
    await ann.goto(server.http("/accounts/login/"))
    await ann.locator("#username").fill("ann")
    await ann.locator("#password").fill("correct horse")
    await ann.locator("#login-form button").click()
    await expect(ann.locator("#account")).to_contain_text("Signed in as ann.")
    await ann.goto(room_url(server, "Hall"))
    await expect(ann.locator("#status")).to_have_text("Connected")

    bob = await enter_room(await visit(), server, "Hall", "Bob")
    await say(bob, "something rude")
    await say(bob, "something kind")
    both = [("Bob", "something rude"), ("Bob", "something kind")]
    await expect_messages(ann, both)
    await expect_messages(bob, both)
    await expect(bob.locator("button.mod")).to_have_count(0)  # no controls but a moderator's
    await expect(ann.locator("#members li", has_text="Bob").locator("button.mod")).to_have_text(
        ["Kick", "Mute", "Ban"]
    )

    rude = ann.locator(".message", has_text="something rude")
    await rude.get_by_role("button", name="Delete").click()
    await expect_messages(bob, [("Bob", "something kind")])
    await expect_messages(ann, [("Bob", "something kind")])
    await expect(ann.locator("#hint")).to_contain_text("deleted")

    late = await enter_room(await visit(), server, "Hall", "Cy")  # nor is it replayed
    await expect_messages(late, [("Bob", "something kind")])

    await ann.locator("#members li", has_text="Cy").get_by_role("button", name="Kick").click()
    await expect(late.locator("#alert")).to_have_text("A moderator removed you from this room.")
    await expect(late.locator("#status")).to_have_text("Not connected")
    await expect(ann.locator("#members li")).to_have_count(2)
