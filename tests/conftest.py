"""Fixtures: real server processes on free ports, the real Redis, a fresh channel layer."""

import os
import shutil
import subprocess
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from channels.layers import get_channel_layer

from rooms.access.directory import get_directory
from rooms.state import clients
from rooms.state.backends import get_presence, get_sequence, get_users, get_writer
from tests.cluster import Cluster
from tests.hosts import HostsWarning, Network
from tests.parallel import redis_url_of_worker, worker_number
from tests.redis_server import RedisServer
from tests.servers import LAUNCHERS, Server, migrate

ROOT = Path(__file__).resolve().parent.parent
# Under `make test`'s parallel workers, each on a database of its own (tests/parallel.py).
TEST_REDIS_URL = redis_url_of_worker(
    os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"), worker_number()
)
# Trust authentication, as on the CI service; the user must be allowed to create databases.
TEST_POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")


@pytest.fixture(autouse=True)
async def fresh_channel_layer():
    """Each in-process test starts with an empty layer bound to its own event loop."""
    await get_channel_layer().flush()


@pytest.fixture(autouse=True)
async def fresh_room_state(transactional_db) -> AsyncIterator[None]:
    """Each test starts with no members, ids or recent messages in this process, and
    writes what it left pending; in-process consumers read and write the test database."""
    getters = (get_writer, get_presence, get_sequence, get_users)
    for getter in getters:
        getter.cache_clear()
    yield
    for getter in getters:
        await getter().close()
        getter.cache_clear()
    get_directory().close()
    get_directory.cache_clear()
    await clients.close()


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


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A migrated SQLite file, made once per run and copied for each test (fast)."""
    path = tmp_path_factory.mktemp("template") / "db.sqlite3"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    """A migrated SQLite database of this test's own."""
    return f"sqlite:///{shutil.copy(migrated_sqlite, tmp_path / 'db.sqlite3')}"


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run, dropped at the end; its
    absence fails under CI and skips elsewhere."""
    name = f"rooms_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(f"{TEST_POSTGRES_URL}/postgres", autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI and is not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {TEST_POSTGRES_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield migrate(f"{TEST_POSTGRES_URL}/{name}")
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    """The run's PostgreSQL database, emptied of rooms and messages for this test."""
    with psycopg.connect(postgres_server_url, autocommit=True) as connection:
        connection.execute("TRUNCATE rooms_message, rooms_room RESTART IDENTITY CASCADE")
    return postgres_server_url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request, tmp_path: Path) -> str:
    """Each database the server supports, in turn: SQLite, then the real PostgreSQL.
    A test module uses it by overriding `database_url` with it."""
    if request.param == "sqlite":
        template = request.getfixturevalue("migrated_sqlite")
        return f"sqlite:///{shutil.copy(template, tmp_path / 'db.sqlite3')}"
    return request.getfixturevalue("postgres_url")


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


@pytest.fixture(params=LAUNCHERS)
def launcher(request) -> str:
    """Each production launcher in turn (tests.servers.LAUNCHERS)."""
    return request.param


@pytest.fixture
def daphne(start_server) -> Server:
    """One Daphne process with the in-memory channel layer."""
    return start_server("daphne")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory) -> Iterator[Cluster]:
    """A Redis Cluster of three masters of this run's own (tests/cluster.py), its seed URLs in
    `.url`; removed at the end. Failing to start fails under CI and skips elsewhere."""
    directory = tmp_path_factory.mktemp("redis-cluster")
    cluster = Cluster(directory)
    try:
        cluster.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
        if os.environ.get("CI"):
            pytest.fail(f"A Redis Cluster is required under CI and could not start: {exc}")
        pytest.skip(f"A Redis Cluster could not start: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis_cluster_url(redis_cluster: Cluster) -> str:
    """The run's cluster as seed URLs, every master up again, the cluster ok and empty."""
    redis_cluster.heal()
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture
def redis_shards(request, tmp_path: Path) -> Iterator[list[RedisServer]]:
    """Redis servers of this test's own, two unless parametrized `indirect`ly, each one
    shard of a comma-separated REDIS_URL; stoppable and restartable on their ports. Failing
    to start fails under CI and skips elsewhere."""
    servers = [
        RedisServer(tmp_path / f"shard{index}") for index in range(getattr(request, "param", 2))
    ]
    try:
        for server in servers:
            server.start()
    except (OSError, RuntimeError) as exc:
        for server in servers:
            server.stop()
        if os.environ.get("CI"):
            pytest.fail(f"redis-server is required under CI and could not start: {exc}")
        pytest.skip(f"redis-server could not start: {exc}")
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def shards_env(redis_shards: list[RedisServer]) -> dict[str, str]:
    """Server environment with every shard of `redis_shards` in REDIS_URL."""
    return {"REDIS_URL": ",".join(server.url for server in redis_shards), "REDIS_PREFIX": "shards"}


@pytest.fixture
def hosts(request) -> Iterator[Network]:
    """Three hosts (tests/hosts.py; `indirect` parametrization gives another count), each a
    network namespace with its own address; loopback addresses, with a warning, where
    namespaces cannot be made. Nothing of theirs is left after the test."""
    with Network(getattr(request, "param", 3)) as network:
        if not network.isolated:
            reason = network.fallback_reason
            warnings.warn(HostsWarning(f"hosts are loopback addresses: {reason}"), stacklevel=2)
        yield network
    assert not network.names(), "the hosts' network was not removed"


@pytest.fixture
def hosts_redis(hosts: Network, tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own on the hosts' network (`hosts.address`), reachable from
    every host. Failing to start fails under CI and skips elsewhere."""
    server = RedisServer(tmp_path / "hosts-redis", hosts.address)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"redis-server is required under CI and could not start: {exc}")
        pytest.skip(f"redis-server could not start: {exc}")
    yield server
    server.stop()
