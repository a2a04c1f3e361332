"""Server lifecycle: start pinned on a free port, probe with a WebSocket, stop, scan the log."""

import asyncio
import logging
import os
import re
import signal
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from bench import database, fleet
from bench.configs import REPO, ServerSpec
from bench.swarm import Swarm

log = logging.getLogger(__name__)

_ERROR_LINE = re.compile(r"Traceback|ERROR|CRITICAL|Exception|exception")


def free_port() -> int:
    """Ask the kernel for an unused loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_url(db: int) -> str:
    """Dedicated Redis database for benchmark runs."""
    return f"redis://127.0.0.1:6379/{db}"


def flush_redis(db: int) -> None:
    """Empty the benchmark's Redis database so runs never see each other's groups."""
    import redis

    client = redis.Redis.from_url(redis_url(db), socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


@dataclass
class RunningServer:
    """A started server process, how it was started, and where its output goes."""

    spec: ServerSpec
    port: int
    proc: asyncio.subprocess.Process
    log_path: Path
    argv: list[str]
    env: dict[str, str]

    @property
    def pid(self) -> int:
        """Pid of the top server process (taskset execs into the server)."""
        return self.proc.pid


async def _probe(server: RunningServer, deadline: float) -> None:
    swarm = Swarm(1)
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.proc.returncode is not None:
            raise RuntimeError(f"{server.spec.label} exited with {server.proc.returncode}")
        try:
            client = await fleet.open_client(swarm, server.port, 0, 0, "probe", 2.0)
        except Exception as exc:
            last = exc
            await asyncio.sleep(0.1)
            continue
        await fleet.close_gracefully(client, 2.0)
        return
    raise TimeoutError(f"{server.spec.label} not accepting WebSockets: {last!r}")


async def start(
    spec: ServerSpec, log_path: Path, cpus: str, redis_db: int, timeout: float
) -> RunningServer:
    """Start the server pinned to `cpus` on a free port and wait until a WebSocket opens.

    The server inherits this process's file-descriptor limit, which the CLI raises to the
    hard limit.
    """
    if spec.layer.startswith("redis"):
        flush_redis(redis_db)
    overrides = spec.env_overrides(redis_url(redis_db))
    env = {**os.environ, **overrides}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if spec.app and spec.app.migrate:
        template = log_path.parent / f"template-{spec.app.settings}.sqlite3"
        db_url = await database.fresh(env, template, log_path.with_suffix(".sqlite3"), timeout)
        env["DATABASE_URL"] = overrides["DATABASE_URL"] = db_url
    port = free_port()
    argv = spec.argv(port, cpus)
    with log_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=REPO,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(spec, port, proc, log_path, argv, overrides)
    try:
        await _probe(server, time.monotonic() + timeout)
    except BaseException:
        await stop(server, 5.0)
        raise
    return server


async def stop(server: RunningServer, timeout: float) -> int | None:
    """SIGTERM the server's process group, SIGKILL it if still there after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if server.proc.returncode is not None:
            break
        try:
            os.killpg(server.proc.pid, sig)
        except ProcessLookupError:
            break
        with suppress(TimeoutError):
            await asyncio.wait_for(server.proc.wait(), timeout)
    if server.proc.returncode is None:
        log.error("server %s (pid %d) did not exit", server.spec.label, server.pid)
    server.log_path.with_suffix(".sqlite3").unlink(missing_ok=True)
    return server.proc.returncode


def log_errors(path: Path, limit: int = 5) -> tuple[int, list[str]]:
    """Count error-looking lines in a server log and keep the first few."""
    count, first = 0, []
    try:
        with path.open(errors="replace") as lines:
            for line in lines:
                if _ERROR_LINE.search(line):
                    count += 1
                    if len(first) < limit:
                        first.append(line.rstrip()[:300])
    except OSError:
        return 0, []
    return count, first


@asynccontextmanager
async def serving(
    spec: ServerSpec, log_path: Path, cpus: str, redis_db: int, timeout: float
) -> AsyncIterator[RunningServer]:
    """Run a server for the duration of one benchmark case, always stopping it."""
    server = await start(spec, log_path, cpus, redis_db, timeout)
    try:
        yield server
    finally:
        await stop(server, 10.0)
