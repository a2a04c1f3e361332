"""Server lifecycle: start pinned on a free port, probe with a WebSocket, stop, scan the log."""

import asyncio
import logging
import os
import re
import signal
import socket
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from bench import database, fleet
from bench.configs import REPO, SEED_PORT, ServerSpec
from bench.swarm import Swarm

log = logging.getLogger(__name__)

_ERROR_LINE = re.compile(r"Traceback|ERROR|CRITICAL|Exception|exception")


def free_port() -> int:
    """Ask the kernel for an unused loopback port, never the seed's."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != SEED_PORT:
            return port


def port_is_free(port: int) -> bool:
    """True when a server could listen on 0.0.0.0:`port` (connections in TIME_WAIT allowed)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


async def wait_port_free(port: int, timeout: float) -> None:
    """Wait for a fixed port to be released, so a probe never reaches someone else's server."""
    deadline = time.monotonic() + timeout
    while not port_is_free(port):
        if time.monotonic() >= deadline:
            raise RuntimeError(f"port {port} is in use by another process")
        await asyncio.sleep(0.2)


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
    if spec.port is not None:
        await wait_port_free(spec.port, timeout)
    port = spec.port or free_port()
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


class ServerSlot:
    """The server of one benchmark case: started on entry, stopped on exit, and replaced by
    a fresh process when the case asks (the seed does not survive a mass disconnect)."""

    def __init__(
        self, spec: ServerSpec, log_path: Path, cpus: str, redis_db: int, timeout: float
    ) -> None:
        self.spec = spec
        self.log_path = log_path
        self.cpus = cpus
        self.redis_db = redis_db
        self.timeout = timeout
        self.current: RunningServer | None = None
        self.logs: list[Path] = []
        self.exits: list[int | None] = []

    @property
    def server(self) -> RunningServer:
        """The running process."""
        if self.current is None:
            raise RuntimeError(f"{self.spec.label} is not running")
        return self.current

    async def start(self) -> RunningServer:
        """Start a process; each one after the first logs to a file of its own."""
        path = self.log_path
        if self.logs:
            path = path.with_name(f"{path.stem}-{len(self.logs)}{path.suffix}")
        self.logs.append(path)
        self.current = await start(self.spec, path, self.cpus, self.redis_db, self.timeout)
        return self.current

    async def stop(self) -> None:
        """Stop the process, if any, and keep its exit status."""
        if self.current is not None:
            server, self.current = self.current, None
            self.exits.append(await stop(server, 10.0))

    async def restart(self) -> RunningServer:
        """Replace the process with a fresh one."""
        await self.stop()
        return await self.start()

    def log_errors(self) -> tuple[int, list[str]]:
        """Error-looking lines over every process's log."""
        count, first = 0, []
        for path in self.logs:
            n, lines = log_errors(path)
            count += n
            first += lines
        return count, first[:5]

    async def __aenter__(self) -> "ServerSlot":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
