"""CPU time and RSS of a process tree read from /proc, so multi-process servers count whole."""

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    """One reading of a process tree: wall clock, cumulative CPU seconds, resident bytes."""

    wall: float
    cpu_s: float
    rss: int


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """Return pid and every live process below it."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo and len(tree) < 10_000:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, ()))
    return tree


def sample(pid: int) -> Usage:
    """Read CPU seconds and RSS summed over pid's process tree."""
    cpu_ticks = rss_pages = 0
    for member in descendants(pid):
        try:
            fields = _stat_fields(member)
            rss_pages += int(Path(f"/proc/{member}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        cpu_ticks += int(fields[11]) + int(fields[12])
    return Usage(time.monotonic(), cpu_ticks / _TICK, rss_pages * _PAGE)


def cpu_percent(before: Usage, after: Usage) -> float:
    """Percentage of one core used between two readings."""
    wall = after.wall - before.wall
    return 100.0 * (after.cpu_s - before.cpu_s) / wall if wall > 0 else 0.0


def system_busy_s() -> float:
    """CPU seconds all cores have spent busy since boot (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def own_cpu_s() -> float:
    """CPU seconds this process (the load generator) has used."""
    return time.process_time()


@dataclass(frozen=True)
class Window:
    """Start of a measured window: server usage, generator CPU and whole-machine busy time."""

    server: Usage
    gen_cpu_s: float
    busy_s: float

    @classmethod
    def open(cls, server_pid: int) -> "Window":
        """Take the opening readings."""
        return cls(sample(server_pid), own_cpu_s(), system_busy_s())

    def close(self, server_pid: int) -> dict[str, float]:
        """Server, generator and everything-else CPU % (of one core) plus server RSS."""
        end = sample(server_pid)
        wall = end.wall - self.server.wall or 1e-9
        server_s = end.cpu_s - self.server.cpu_s
        gen_s = own_cpu_s() - self.gen_cpu_s
        others_s = system_busy_s() - self.busy_s - server_s - gen_s
        return {
            "server_cpu_pct": round(100 * server_s / wall, 1),
            "gen_cpu_pct": round(100 * gen_s / wall, 1),
            "others_cpu_pct": round(max(0.0, 100 * others_s / wall), 1),
            "server_rss_mb": round(end.rss / 2**20, 1),
        }


async def wait_for_quiet(limit_pct: float, timeout_s: float, interval_s: float = 1.0) -> float:
    """Wait until other processes use under limit_pct of a core; return the last reading."""
    deadline = time.monotonic() + timeout_s
    while True:
        busy, own, started = system_busy_s(), own_cpu_s(), time.monotonic()
        await asyncio.sleep(interval_s)
        wall = time.monotonic() - started
        others = 100 * ((system_busy_s() - busy) - (own_cpu_s() - own)) / wall
        if others < limit_pct or time.monotonic() >= deadline:
            return round(max(0.0, others), 1)
