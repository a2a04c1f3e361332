"""A redis-server of the test's own: its own address and port, nothing saved, and stopped and
started again on the same port, as clients see a Redis restart."""

import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from tests import processes

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """One redis-server in the foreground, bound to `host`; its files and log in `directory`."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", args: Sequence[str] = ()) -> None:
        self.directory = directory
        self.host = host
        self.port = processes.free_port(host)
        self.args = list(args)
        self.log_path = directory / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        return [
            REDIS_SERVER,
            *("--bind", self.host, "--port", str(self.port), "--dir", str(self.directory)),
            *("--save", "", "--appendonly", "no", "--logfile", str(self.log_path)),
            # Bound to the one address the test chose; without this, Redis refuses every
            # client but loopback ones (no password), and the hosts' network is not loopback.
            *("--protected-mode", "no"),
            *self.args,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> None:
        """Start on this server's port and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=processes.die_with_parent,
        )
        deadline = time.monotonic() + timeout
        with self.client(socket_timeout=1) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited early:\n{self.log()}")
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL if it does not end."""
        if self.process is not None:
            processes.stop(self.process)

    def kill(self) -> None:
        """SIGKILL: gone at once, as in a crash."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def client(self, **kwargs) -> redis.Redis:
        """A synchronous client of this server alone."""
        return redis.Redis(host=self.host, port=self.port, socket_connect_timeout=2, **kwargs)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""
