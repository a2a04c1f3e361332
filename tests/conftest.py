"""Fixtures: real server processes on free ports, the real Redis, a fresh channel layer."""

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from channels.layers import get_channel_layer

from tests.servers import Server

ROOT = Path(__file__).resolve().parent.parent
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
async def fresh_channel_layer():
    """Each in-process test starts with an empty layer bound to its own event loop."""
    await get_channel_layer().flush()


@pytest.fixture
def redis_url() -> str:
    """The real Redis; its absence fails the test under CI and skips it elsewhere."""
    try:
        redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(
                f"Redis is required under CI and is not reachable at {TEST_REDIS_URL}: {exc}"
            )
        pytest.skip(f"Redis not reachable at {TEST_REDIS_URL}")
    return TEST_REDIS_URL


@pytest.fixture
def redis_env(redis_url: str) -> Iterator[dict[str, str]]:
    """Server environment sharing one Redis under a key prefix of this test's own."""
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    yield {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix}
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A migrated SQLite database of this test's own."""
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
    )
    return url


@pytest.fixture
def start_server(database_url: str, tmp_path: Path) -> Iterator:
    """Start real server processes; every one is stopped when the test ends."""
    started: list[Server] = []

    def start(kind: str = "daphne", **env: str) -> Server:
        server = Server(kind, {"DATABASE_URL": database_url, **env}, tmp_path)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def daphne(start_server) -> Server:
    """One Daphne process with the in-memory channel layer."""
    return start_server("daphne")
