"""Server configurations under test: which app, which ASGI server, which channel layer."""

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
LAYERS = ("memory", "redis", "redis-pubsub")

# The C++ server rooms re-implements (oat++ "async-server-rooms"), built elsewhere and never
# committed: it takes no arguments and always listens on 0.0.0.0:8000.
SEED = "seed"
SEED_PORT = 8000
DEFAULT_SEED_BINARY = REPO.parent / "shared" / "anchors" / "oatpp-async-server-rooms"

# Product limits that would otherwise cap the load instead of the server: the scenarios
# send up to ~20 frames/s per user and hold up to 19,000 users on one process.
ROOMS_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "bench-only-not-secret",
    "ALLOWED_HOSTS": "127.0.0.1",
    "RATE_LIMIT": "100000",
    "RATE_BURST": "100000",
    "MAX_CONNECTIONS": "20000",
    "MAX_ROOM_CONNECTIONS": "20000",
    "MAX_CONNECTIONS_PER_IP": "0",  # the generator's clients share eight loopback addresses
    "JOIN_RATE": "0",
}


@dataclass(frozen=True)
class App:
    """An ASGI application the bench can serve, and how the generator must talk to it."""

    asgi: str
    settings: str
    dialect: str
    runners: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    migrate: bool = False


APPS = {
    "rooms": App(
        "chatproject.asgi:application",
        "chatproject.settings",
        "rooms",
        ("daphne", "uvicorn", "serve", "fast"),
        ROOMS_ENV,
        migrate=True,
    ),
    "tutorial": App(
        "bench.reference.asgi:application",
        "bench.reference.settings",
        "tutorial",
        ("daphne", "uvicorn"),
    ),
}

RUNNERS = {
    "daphne": "{bin}/daphne -b 127.0.0.1 -p {port} {app}",
    "uvicorn": "{bin}/uvicorn {app} --host 127.0.0.1 --port {port} --loop uvloop "
    "--ws websockets-sansio",
    "serve": "{python} -m rooms.server.serve -b 127.0.0.1 -p {port} {app}",
    "fast": "{python} -m rooms.server.fast -b 127.0.0.1 -p {port} {app}",
}

# Servers outside the APP x RUNNER grid. A multi-process launcher of the product belongs
# here, or comes from --custom NAME=CMD; CPU and RSS are summed over its process tree.
STANDALONE = {
    "fanout-picows": ("{python} -m bench.fanout_server --port {port}", "rooms"),
}


@dataclass(frozen=True)
class ServerSpec:
    """One server configuration: a command template, its dialect, layer and environment."""

    name: str
    command: str
    dialect: str
    layer: str
    app: App | None = None
    extra_env: tuple[tuple[str, str], ...] = ()
    port: int | None = None  # a server that always listens on this port; None: a free one
    binary: Path | None = None  # an executable run as it is, without arguments

    @property
    def label(self) -> str:
        """Name shown in tables, e.g. rooms-daphne/memory."""
        return f"{self.name}/{self.layer}" if self.app else self.name

    @property
    def family(self) -> str:
        """'tutorial' and 'seed' for the references, 'rooms' for what is measured against them."""
        if self.name == SEED:
            return SEED
        return "tutorial" if self.name.startswith("tutorial") else "rooms"

    def missing(self) -> str | None:
        """Why this server cannot run on this machine, or None when it can."""
        if self.binary is None:
            return None
        if not self.binary.is_file() or not os.access(self.binary, os.X_OK):
            return f"no executable {self.name} server at {self.binary} (see --seed-binary)"
        return None

    def argv(self, port: int, cpus: str) -> list[str]:
        """Command line, pinned to `cpus` with taskset."""
        if self.binary is not None:
            return ["taskset", "-c", cpus, str(self.binary)]
        command = self.command.format(
            bin=VENV_BIN, python=sys.executable, port=port, app=self.app.asgi if self.app else ""
        )
        return ["taskset", "-c", cpus, *command.split()]

    def env_overrides(self, redis_url: str) -> dict[str, str]:
        """Variables set on top of the inherited environment (recorded with results)."""
        env: dict[str, str] = {"PYTHONUNBUFFERED": "1"}
        if self.app:
            env["DJANGO_SETTINGS_MODULE"] = self.app.settings
            env.update(self.app.env)
            env["CHANNEL_LAYER"] = self.layer
            if self.layer.startswith("redis"):
                env["REDIS_URL"] = redis_url
        env.update(self.extra_env)
        return env


def seed(binary: Path) -> ServerSpec:
    """The C++ seed: the rooms text dialect on port 8000, no layers, no environment."""
    binary = binary.absolute()  # the server runs in the repository, not where this was asked
    return ServerSpec(SEED, str(binary), "rooms", "none", port=SEED_PORT, binary=binary)


def resolve(
    name: str,
    layer: str,
    custom: dict[str, str],
    extra_env: dict[str, str],
    seed_binary: Path = DEFAULT_SEED_BINARY,
) -> ServerSpec:
    """Turn a name like rooms-daphne, fanout-picows, seed or a --custom entry into a spec."""
    extra = tuple(sorted(extra_env.items()))
    if name == SEED and name not in custom:
        return seed(seed_binary)
    if name in custom:
        app = APPS["tutorial" if name.startswith("tutorial") else "rooms"]
        return ServerSpec(name, custom[name], app.dialect, layer, app, extra)
    if name in STANDALONE:
        command, dialect = STANDALONE[name]
        return ServerSpec(name, command, dialect, "none", None, extra)
    app_name, _, runner = name.partition("-")
    app = APPS.get(app_name)
    if app is None or runner not in app.runners:
        known = [f"{a}-{r}" for a, spec in APPS.items() for r in spec.runners]
        known += [*STANDALONE, SEED]
        raise ValueError(f"unknown server {name!r}; known: {', '.join(known)}")
    return ServerSpec(name, RUNNERS[runner], app.dialect, layer, app, extra)
