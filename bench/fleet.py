"""Open and close many client connections with bounded concurrency and timeouts."""

import asyncio
import gc
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from picows import WSCloseCode, ws_connect

from bench import wire
from bench.stats import latency_summary
from bench.swarm import ChatClient, Swarm

log = logging.getLogger(__name__)

# A generator holds up to 19,000 clients of a few dozen long-lived objects each; with
# Python's default thresholds the collector walks them all again and again, much of the
# generator's CPU while thousands connect (BENCHMARKS.md, "Generator headroom").
GENERATOR_GC_THRESHOLDS = (50_000, 20, 20)


# The kernel picks each connect()'s source port by searching the ephemeral range, even
# ports first: past ~14,000 connections from one address each search runs through the
# whole even half, most of the generator's CPU (BENCHMARKS.md, "Generator headroom").
# Every loopback address has ports of its own: the clients spread over eight of them.
SOURCE_HOSTS = tuple(f"127.0.0.{n}" for n in range(2, 10)) if sys.platform == "linux" else ()


def tune_collector() -> None:
    """Collect less often in a generator process, and never over what start-up loaded."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GENERATOR_GC_THRESHOLDS)


@dataclass
class Fleet:
    """Connected users plus how connecting them went."""

    swarm: Swarm
    clients: list[ChatClient] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    connect_s: float = 0.0
    handshake_ns: list[int] = field(default_factory=list)

    def live(self) -> list[ChatClient]:
        """Users whose connection is still open."""
        return [c for c in self.clients if c.alive]

    def summary(self) -> dict[str, object]:
        """Connection counts and rate for result records."""
        ok = len(self.clients)
        handshake = latency_summary(self.handshake_ns)
        return {
            "conns_ok": ok,
            "connect_p50_ms": handshake["p50_ms"],
            "connect_p99_ms": handshake["p99_ms"],
            "connect_max_ms": handshake["max_ms"],
            "conns_failed": sum(self.failures.values()),
            "connect_s": round(self.connect_s, 3),
            "conn_per_s": round(ok / self.connect_s, 1) if self.connect_s > 0 else None,
            "failure_kinds": dict(self.failures.most_common(5)),
        }


async def open_client(
    swarm: Swarm, port: int, index: int, room: int, prefix: str, timeout: float
) -> ChatClient:
    """Connect one user to room r{room} as nickname {prefix}{index}."""
    url = wire.chat_url(port, f"r{room}", f"{prefix}{index}")
    source = {"local_addr": (SOURCE_HOSTS[index % len(SOURCE_HOSTS)], 0)} if SOURCE_HOSTS else {}
    _, client = await asyncio.wait_for(
        ws_connect(
            lambda: ChatClient(swarm, index, room),
            url,
            websocket_handshake_timeout=timeout,
            read_buffer_init_size=4096,
            **source,
        ),
        timeout,
    )
    if client is None:  # picows returns no listener when the server hung up mid-handshake
        raise ConnectionResetError("connection closed during the handshake")
    return client


async def connect_fleet(
    swarm: Swarm,
    port: int,
    room_of: list[int],
    concurrency: int,
    timeout: float,
    budget_s: float,
    prefix: str = "u",
) -> Fleet:
    """Connect len(room_of) users, user i into room room_of[i], at most `concurrency` at once.

    Users not connected within `budget_s` count as failed with kind 'deadline'.
    """
    fleet = Fleet(swarm)
    gate = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + budget_s

    async def one(index: int) -> None:
        async with gate:
            if time.monotonic() >= deadline:
                fleet.failures["deadline"] += 1
                return
            began = time.monotonic_ns()
            try:
                client = await open_client(swarm, port, index, room_of[index], prefix, timeout)
            except Exception as exc:
                fleet.failures[type(exc).__name__] += 1
                if sum(fleet.failures.values()) == 1:
                    log.warning("connect failed: %r", exc)
                return
            fleet.handshake_ns.append(time.monotonic_ns() - began)
            fleet.clients.append(client)

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(len(room_of))))
    fleet.connect_s = time.monotonic() - started
    fleet.clients.sort(key=lambda c: c.index)
    return fleet


async def close_gracefully(client: ChatClient, timeout: float) -> bool:
    """Run the WebSocket close handshake; True when the server completed it in time."""
    client.leaving = True
    if client.transport is None:
        return False
    client.transport.send_close(WSCloseCode.OK)
    try:
        await asyncio.wait_for(client.transport.wait_disconnected(), timeout)
    except TimeoutError:
        client.transport.disconnect(graceful=False)
        return False
    return True


def abort_all(clients: list[ChatClient]) -> None:
    """Drop every connection at once (RST) so teardown never waits on the server."""
    for client in clients:
        client.leaving = True
        if client.transport is not None and not client.transport.is_disconnected:
            client.transport.disconnect(graceful=False)


async def wait_quiet(swarm: Swarm, quiet_s: float, limit_s: float) -> float:
    """Wait until no frame arrived for quiet_s (at most limit_s); return seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        if time.monotonic_ns() - swarm.last_frame_ns > quiet_s * 1e9:
            break
        await asyncio.sleep(0.05)
    return time.monotonic() - started
