"""Production configuration, security headers, health and metrics endpoints, live."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from chatproject.settings import root_path
from tests.clients import join, recv, wait_until
from tests.servers import BASE_ENV, ROOT, collect_static, free_port

PLAIN_400 = """
<!doctype html>
<html lang="en">
<head>
  <title>Bad Request (400)</title>
</head>
<body>
  <h1>Bad Request (400)</h1><p></p>
</body>
</html>
"""


def _get(url: str, **headers: str) -> tuple[int, Message, str]:
    """GET; header names are looked up without regard to case, as HTTP reads them."""
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("SECRET_KEY", "Setting SECRET_KEY is missing, and has no default."),
        ("ALLOWED_HOSTS", "Setting ALLOWED_HOSTS is missing, and has no default."),
    ],
)
def test_production_settings_refuse_to_start_without_secret_key_or_allowed_hosts(missing, message):
    env = {**os.environ, **BASE_ENV, "DEBUG": "0", missing: ""}
    result = subprocess.run(
        [sys.executable, "-c", "import chatproject.settings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert message in result.stderr


def _settings_value(name: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", f"from chatproject import settings; print(settings.{name})"],
        cwd=ROOT,
        env={**os.environ, **BASE_ENV, **env},
        capture_output=True,
        text=True,
    )


def test_secret_key_may_come_from_a_file_and_a_missing_file_stops_the_start(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-the-file\n")
    found = _settings_value("SECRET_KEY", SECRET_KEY="", SECRET_KEY_FILE=str(key_file))
    assert found.stdout == "from-the-file\n"
    given = _settings_value("SECRET_KEY", SECRET_KEY="given", SECRET_KEY_FILE=str(key_file))
    assert given.stdout == "given\n"
    missing = _settings_value("SECRET_KEY", SECRET_KEY="", SECRET_KEY_FILE=str(tmp_path / "none"))
    assert missing.returncode != 0
    assert f"Setting SECRET_KEY_FILE='{tmp_path / 'none'}': No such file or directory." in (
        missing.stderr
    )


def test_make_run_shows_no_debug_page_to_a_host_it_does_not_serve(tmp_path):
    # A newcomer's shell: no key, no hosts, and DEBUG on from some earlier work.
    env = {**os.environ, "DEBUG": "1"}
    for key in ("SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_SETTINGS_MODULE", "REDIS_URL"):
        env.pop(key, None)
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", STATIC_ROOT=str(tmp_path))
    key_file = tmp_path / "secret_key"
    port = free_port()
    # -o: the virtualenv running these tests serves, as installed.
    command = ["make", "-s", "-o", ".venv/.run-installed", "run", f"PY={sys.executable}",
               f"SECRET_KEY_FILE={key_file}", "HOST=127.0.0.1", f"PORT={port}"]  # fmt: skip
    with open(tmp_path / "make-run.log", "wb") as log:
        make = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # make and the server in a process group of their own
        )
    try:
        _wait_for_port(make, port, tmp_path / "make-run.log")
        url = f"http://127.0.0.1:{port}/"
        status, _, body = _get(url, Host=f"localhost:{port}")
        assert status == 200 and 'action="/chat/"' in body
        assert _get(url, Host="chat.example.com")[::2] == (400, PLAIN_400)
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert len(key_file.read_text().strip()) >= 50
    finally:
        os.killpg(make.pid, signal.SIGTERM)  # rooms.server.workers passes it on to its worker
        make.wait(20)
        _wait_for_port_closed(port)


def _wait_for_port(process: subprocess.Popen, port: int, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout} s")


def _wait_for_port_closed(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return
        time.sleep(0.1)
    raise AssertionError(f"{port} still listens after {timeout} s")


@pytest.mark.parametrize(
    ("raw", "valid"),
    [("/rooms", True), ("/a/b", True), ("rooms", False), ("/rooms/", False), ("/", False),
     ("/a?b", False), ("/a#b", False), ("/a%2F", False), ("/a b", False)],
)  # fmt: skip
def test_root_path_is_a_path_prefix_without_a_trailing_slash(raw, valid):
    if valid:
        assert root_path(raw) == raw
    else:
        with pytest.raises(ValueError):
            root_path(raw)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs) -> None:
        return None


def _get_once(url: str, **headers: str) -> tuple[int, Message, str]:
    """GET without following a redirect: the redirect itself is the answer. Header names
    are looked up without regard to case, as HTTP reads them (servers differ in case)."""
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


@pytest.fixture(scope="module")
def static_root(tmp_path_factory) -> str:
    return str(collect_static(tmp_path_factory.mktemp("static")))


@pytest.mark.parametrize("kind", ["serve", "fast", "daphne", "runserver"])
async def test_a_root_path_sent_by_a_client_changes_no_link_or_redirect(
    start_server, static_root, kind
):
    server = start_server(kind, STATIC_ROOT=static_root)
    evil = {"Daphne-Root-Path": "/evil"}
    status, headers, _ = _get_once(server.http("/chat/?room=Room1&nickname=Nick"), **evil)
    assert (status, headers["Location"]) == (302, "/chat/Room1/?nickname=Nick")
    status, headers, _ = _get_once(server.http("/admin/"), **evil)
    assert (status, headers["Location"]) == (302, "/admin/login/?next=/admin/")
    status, _, page = _get_once(server.http("/"), **evil)
    assert status == 200 and 'action="/chat/"' in page and "/evil" not in page
    nick = await connect(server.url("/ws/chat/Room1/?nickname=Nick"), additional_headers=evil)
    assert await recv(nick) == "Nick joined Room1"
    await nick.close()


async def test_a_root_path_configured_by_the_operator_prefixes_links_and_routes(
    start_server, static_root
):
    server = start_server("serve", STATIC_ROOT=static_root, ROOT_PATH="/rooms")
    status, headers, _ = _get_once(server.http("/rooms/chat/?room=Room1&nickname=Nick"))
    assert (status, headers["Location"]) == (302, "/rooms/chat/Room1/?nickname=Nick")
    status, _, page = _get_once(server.http("/rooms/"))
    assert status == 200 and 'action="/rooms/chat/"' in page
    stylesheet = re.search(r'href="(/rooms/static/rooms/rooms\.\w+\.css)"', page)[1]
    assert _get_once(server.http(stylesheet))[0] == 200
    nick = await connect(server.url("/rooms/ws/chat/Room1/?nickname=Nick"))
    assert await recv(nick) == "Nick joined Room1"
    await nick.close()


def test_http_pages_carry_the_security_headers(start_server, launcher):
    server = start_server(launcher)
    status, headers, _ = _get(server.http("/healthz"))
    assert status == 200
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "Strict-Transport-Security" not in headers  # only with HTTPS=1


def test_hsts_and_secure_cookies_only_behind_https(start_server, launcher):
    server = start_server(launcher, HTTPS="1")
    _, headers, _ = _get(server.http("/healthz"), **{"X-Forwarded-Proto": "https"})
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    _, headers, _ = _get(server.http("/healthz"))  # not through the TLS proxy
    assert "Strict-Transport-Security" not in headers


async def test_metrics_count_connections_rooms_messages_and_errors(start_server, launcher):
    server = start_server(launcher)
    nick = await join(server, "Room1", "Nick")
    assert await recv(nick) == "Nick joined Room1"
    await nick.send(b"\x00binary")
    assert (await recv(nick)).startswith("error BINARY_UNSUPPORTED")
    for n in range(3):
        await nick.send(f"m{n}")
        assert await recv(nick) == f"Nick: m{n}"
    status, headers, body = _get(server.http("/metrics"))
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    lines = set(body.splitlines())
    assert {
        "rooms_connections 1",
        "rooms_rooms 1",
        "rooms_messages_in_total 3",
        "rooms_messages_out_total 4",  # the join and three messages
        "rooms_dropped_total 0",
        'rooms_errors_total{code="BINARY_UNSUPPORTED"} 1',
        'rooms_delivery_latency_seconds_bucket{le="+Inf"} 0',  # sampled 1 in 16
    } <= lines
    await nick.close()


def test_readyz_reports_each_dependency(start_server):
    server = start_server("serve")
    status, _, body = _get(server.http("/readyz"))
    assert status == 200
    checks = '{"channel_layer": "ok", "database": "ok", "history": "ok"}'
    assert body == f'{{"status": "ready", "checks": {checks}}}'


def test_readyz_names_no_host_or_port_and_logs_why(start_server):
    closed = free_port()
    server = start_server("serve", REDIS_URL=f"redis://127.0.0.1:{closed}/0")
    status, _, body = _get(server.http("/readyz"))
    assert status == 503
    checks = json.loads(body)["checks"]
    assert checks["channel_layer"] == "unavailable"
    assert checks["database"] == "ok"
    for detail in (str(closed), "127.0.0.1", "Error", "refused"):
        assert detail not in body, detail
    assert (
        f"WARNING rooms.web.health readiness check channel_layer failed: "
        f"ConnectionError: Error 111 connecting to 127.0.0.1:{closed}."
    ) in server.log()


async def test_server_log_has_one_line_per_join_and_leave_with_the_client(start_server, launcher):
    server = start_server(launcher)
    _get(server.http("/healthz"))
    nick = await join(server, "Room1", "Nick")
    assert await recv(nick) == "Nick joined Room1"
    await nick.close()
    # The leave is logged once the server has seen the close.
    log = await wait_until(server.log, lambda log: "leave room=" in log)
    assert re.search(r"join room='Room1' nickname='Nick' client=127\.0\.0\.1:\d+", log)
    assert "leave room='Room1' nickname='Nick' code=1000" in log
    # HTTP requests keep their access-log line (Daphne's or uvicorn's format)
    assert re.search(r'"GET /healthz( HTTP/1\.1)?" 200', log)
    assert "WSCONNECT" not in log and "WSDISCONNECT" not in log
