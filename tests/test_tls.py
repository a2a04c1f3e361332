"""The launcher terminating TLS itself (an `ssl:` endpoint, no proxy in front): rooms and
pages over TLS, and the send buffer bound for TLS clients too."""

import asyncio
import datetime
import ipaddress
import shutil
import socket
import ssl
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.clients import TIMEOUT, read_head, recv
from tests.servers import Server

APPLICATION = "chatproject.asgi:application"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files in `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certificate_path, key_path = directory / "cert.pem", directory / "key.pem"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate_path, key_path


class TLSServer(Server):
    """`python -m rooms.server.serve` serving TLS on an `ssl:` endpoint."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        super().__init__("serve-tls", env, log_dir)
        self.certificate, self.key = self_signed(log_dir)
        self.client_context = ssl.create_default_context(cafile=self.certificate)

    def command(self) -> list[str]:
        endpoint = (
            f"ssl:{self.port}:interface=127.0.0.1:privateKey={self.key}:certKey={self.certificate}"
        )
        return [sys.executable, "-m", "rooms.server.serve", "-e", endpoint, APPLICATION]

    def url(self, path: str) -> str:
        return f"wss://127.0.0.1:{self.port}{path}"


@pytest.fixture
def start_tls(migrated_sqlite, tmp_path) -> Iterator:
    """Start the launcher on an `ssl:` endpoint; it is stopped when the test ends."""
    started: list[TLSServer] = []

    def start(**env: str) -> TLSServer:
        database = shutil.copy(migrated_sqlite, tmp_path / "db.sqlite3")
        env = {"DATABASE_URL": f"sqlite:///{database}", "RATE_LIMIT": "0", **env}
        server = TLSServer(env, tmp_path)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def tls_server(start_tls) -> TLSServer:
    return start_tls()


async def _join(server: TLSServer, room: str, nickname: str):
    url = server.url(f"/ws/chat/{room}/?nickname={nickname}")
    return await connect(url, ssl=server.client_context, open_timeout=TIMEOUT)


def _https_get(server: TLSServer, path: str) -> tuple[int, bytes]:
    url = f"https://127.0.0.1:{server.port}{path}"
    with urllib.request.urlopen(url, context=server.client_context, timeout=10) as response:
        return response.status, response.read()


async def test_the_launcher_serves_rooms_and_pages_over_tls(tls_server):
    nick = await _join(tls_server, "Room1", "Nick")
    assert await recv(nick) == "Nick joined Room1"
    alex = await _join(tls_server, "Room1", "Alex")
    assert await recv(nick) == await recv(alex) == "Alex joined Room1"
    await alex.send("over TLS")
    assert await recv(nick) == await recv(alex) == "Alex: over TLS"
    assert await asyncio.to_thread(_https_get, tls_server, "/healthz") == (
        200,
        b'{"status": "ok"}',
    )
    await alex.close()
    assert await recv(nick) == "Alex left the room"
    await nick.close()


def _raw_tls_join(server: TLSServer, path: str) -> ssl.SSLSocket:
    """A TLS WebSocket handshake over a socket with a small receive buffer, which then
    reads only when told to."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    tls = server.client_context.wrap_socket(sock, server_hostname="127.0.0.1")
    tls.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert read_head(tls).startswith(b"HTTP/1.1 101")
    return tls


def _read_until_closed(sock: ssl.SSLSocket) -> int:
    """Read what the server had queued until it ends the connection; the bytes read."""
    total = 0
    try:
        while chunk := sock.recv(65536):
            total += len(chunk)
    except OSError:  # reset, or TLS cut short
        pass
    return total


async def _drain(ws) -> None:
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        pass


async def test_tls_client_that_stops_reading_is_dropped_and_bounds_server_memory(start_tls):
    server = start_tls(SEND_BUFFER_LIMIT="262144")
    reader = await _join(server, "Busy", "Reader")
    assert await recv(reader) == "Reader joined Busy"
    stalled = _raw_tls_join(server, "/ws/chat/Busy/?nickname=Stalled")
    assert await recv(reader) == "Stalled joined Busy"
    sender = await _join(server, "Busy", "Sender")
    assert await recv(reader) == await recv(sender) == "Sender joined Busy"
    drain = asyncio.create_task(_drain(sender))
    baseline = server.rss_kib()
    text = "x" * 4000
    received: list[str] = []
    sent = 0

    async def send_and_keep_up() -> None:
        nonlocal sent
        await sender.send(f"{sent} {text}")
        sent += 1
        while len(received) < sent - 5:  # the reader stays at most 5 messages behind
            received.append(await recv(reader))

    # As over plain TCP (tests/test_limits.py): the kernel's buffers fill first, then the
    # process's, then the close handshake times out after 1 s; bounded either way.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "Stalled left the room" not in received:
        await send_and_keep_up()
    for _ in range(100):
        await send_and_keep_up()
    while len([line for line in received if line.startswith("Sender:")]) < sent:
        received.append(await recv(reader))
    assert "Stalled left the room" in received, sent
    messages = [line for line in received if line.startswith("Sender:")]
    assert messages == [f"Sender: {n} {text}" for n in range(sent)]  # nothing lost, in order
    assert server.rss_kib() - baseline < 30 * 1024, (sent, baseline)
    assert await asyncio.to_thread(_read_until_closed, stalled) < sent * 4000
    host, port = stalled.getsockname()[:2]
    assert f"slow consumer {host}:{port}: over 262144 unsent bytes, closing" in server.log()
    stalled.close()
    drain.cancel()
    await sender.close()
    await reader.close()
