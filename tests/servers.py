"""Run the real server as a subprocess on a free port, the way users run it."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BASE_ENV = {
    "DJANGO_SETTINGS_MODULE": "chatproject.settings",
    "DEBUG": "0",
    "SECRET_KEY": "test-secret-key",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "PYTHONUNBUFFERED": "1",
}


# The production launchers: Daphne's (rooms.server.serve) and uvicorn's (rooms.server.fast).
# The reliability suites run against both.
LAUNCHERS = ["serve", "fast"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def collect_static(root: Path) -> Path:
    """Run `collectstatic` into `root`, as a deployment does; pass it as STATIC_ROOT."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, **BASE_ENV, "STATIC_ROOT": str(root)},
        check=True,
    )
    return root


def migrate(url: str) -> str:
    """Apply every migration to the database at `url`."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
    )
    return url


def _command(kind: str, port: int) -> list[str]:
    if kind == "daphne":
        daphne = str(Path(sys.executable).with_name("daphne"))
        return [daphne, "-b", "127.0.0.1", "-p", str(port), "chatproject.asgi:application"]
    if kind == "serve":  # the production launcher: Daphne plus graceful shutdown and limits
        app = "chatproject.asgi:application"
        return [sys.executable, "-m", "rooms.server.serve", "-b", "127.0.0.1", "-p", str(port), app]
    if kind == "fast":  # the launcher on uvicorn, uvloop and picows
        app = "chatproject.asgi:application"
        return [sys.executable, "-m", "rooms.server.fast", "-b", "127.0.0.1", "-p", str(port), app]
    if kind == "runserver":
        return [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    if kind.startswith("workers:"):  # N processes of the production launcher on one port
        workers = kind.split(":")[1]
        return [sys.executable, "-m", "rooms.server.workers", "--workers", workers,
                "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    raise ValueError(kind)


class Server:
    """One server process; `url(path)` gives its WebSocket address."""

    def __init__(self, kind: str, env: dict[str, str], log_dir: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.env = {**os.environ, **BASE_ENV, **env}
        for key in ("REDIS_URL", "CHANNEL_LAYER", "REDIS_PREFIX"):
            if key not in env:
                self.env.pop(key, None)
        self.log_path = log_dir / f"{kind}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> None:
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited early:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} did not listen within {timeout}s:\n{self.log()}")

    def command(self) -> list[str]:
        """The server's command line."""
        return _command(self.kind, self.port)

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        """The process's resident memory, in KiB."""
        with open(f"/proc/{self.process.pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def restart(self) -> None:
        """Stop the process (SIGTERM) and start a new one on the same port."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL: the process dies without any cleanup."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
