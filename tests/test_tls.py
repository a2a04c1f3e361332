"""The launcher terminating TLS itself (an `ssl:` endpoint, no proxy in front)."""

import asyncio
import datetime
import ipaddress
import shutil
import ssl
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect

from tests.clients import TIMEOUT, recv
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
    """`python -m rooms.serve` serving TLS on an `ssl:` endpoint."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        super().__init__("serve-tls", env, log_dir)
        self.certificate, self.key = self_signed(log_dir)
        self.client_context = ssl.create_default_context(cafile=self.certificate)

    def command(self) -> list[str]:
        endpoint = (
            f"ssl:{self.port}:interface=127.0.0.1:privateKey={self.key}:certKey={self.certificate}"
        )
        return [sys.executable, "-m", "rooms.serve", "-e", endpoint, APPLICATION]

    def url(self, path: str) -> str:
        return f"wss://127.0.0.1:{self.port}{path}"


@pytest.fixture
def tls_server(migrated_sqlite, tmp_path) -> Iterator[TLSServer]:
    database = shutil.copy(migrated_sqlite, tmp_path / "db.sqlite3")
    env = {"DATABASE_URL": f"sqlite:///{database}", "RATE_LIMIT": "0"}
    server = TLSServer(env, tmp_path)
    server.start()
    yield server
    server.stop()


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
