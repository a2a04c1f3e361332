"""One paced measurement step: offer a message rate, drain, and judge loss and latency."""

import asyncio
import time
from dataclasses import dataclass

from picows import WSMsgType

from bench import procstat, wire
from bench.fleet import Fleet
from bench.stats import latency_summary

TICK_S = 0.002


@dataclass(frozen=True)
class StepRules:
    """How long a step runs, what counts as holding the rate, and when to stop climbing."""

    duration_s: float
    drain_s: float = 5.0
    quiet_s: float = 1.0
    max_p99_ms: float = 100.0
    stop_p99_ms: float = 1000.0


def _verdict(result: dict[str, object], rules: StepRules) -> tuple[bool, bool, str]:
    """(clean, lossless, reason): clean also needs p99 within max_p99_ms."""
    if not result["sent"]:
        return False, False, "no live users to send"
    if result["lost_connections"]:
        return False, False, f"{result['lost_connections']} conns dropped"
    if result["delivered"] < result["expected"]:
        return False, False, f"loss {result['loss_pct']}%"
    if result["delivered"] > result["expected"]:
        return False, False, "duplicates"
    p99 = result["p99_ms"]
    if p99 is None or p99 > rules.max_p99_ms:
        return False, True, f"p99 {p99} ms"
    return True, True, "ok"


async def _drain(fleet: Fleet, expected: int, rules: StepRules) -> None:
    swarm = fleet.swarm
    started = time.monotonic()
    while time.monotonic() - started < rules.drain_s and swarm.delivered < expected:
        if time.monotonic_ns() - swarm.last_frame_ns > rules.quiet_s * 1e9:
            break
        await asyncio.sleep(0.02)


async def run_step(
    fleet: Fleet, dialect: str, rate: float, step: int, server_pid: int, rules: StepRules
) -> dict[str, object]:
    """Send `rate` messages/s spread round-robin over all live users for one step."""
    swarm = fleet.swarm
    senders = fleet.live()
    swarm.start_step(step)
    lost_before = swarm.lost_connections
    window = procstat.Window.open(server_pid)
    started = time.monotonic()
    sent = expected = turn = 0
    while senders:
        elapsed = time.monotonic() - started
        if elapsed >= rules.duration_s:
            break
        for _ in range(int(rate * elapsed) + 1 - sent):
            client = senders[turn % len(senders)]
            turn += 1
            if not client.alive:
                continue
            payload = wire.make_payload(step, client.index, sent, time.monotonic_ns())
            client.transport.send(WSMsgType.TEXT, wire.encode(dialect, payload))
            sent += 1
            expected += swarm.members[client.room]
        await asyncio.sleep(TICK_S)
    send_s = time.monotonic() - started
    await _drain(fleet, expected, rules)
    usage = window.close(server_pid)
    active_s = max(send_s, swarm.last_frame_ns / 1e9 - started)
    result: dict[str, object] = {
        "step": step,
        "rate_msg_s": round(rate, 1),
        "duration_s": round(send_s, 2),
        "sent": sent,
        "expected": expected,
        "delivered": swarm.delivered,
        "loss_pct": round(100.0 * (expected - swarm.delivered) / expected, 3) if expected else 0.0,
        "offered_dlv_s": round(expected / send_s, 1) if send_s else 0.0,
        "dlv_s": round(swarm.delivered / active_s, 1) if active_s else 0.0,
        **latency_summary(swarm.latencies),
        "stale": swarm.stale,
        "other_frames": swarm.other,
        "lost_connections": swarm.lost_connections - lost_before,
        **usage,
    }
    result["ok"], result["lossless"], result["reason"] = _verdict(result, rules)
    p99 = result["p99_ms"]
    result["climb"] = bool(result["lossless"]) and p99 is not None and p99 <= rules.stop_p99_ms
    return result
