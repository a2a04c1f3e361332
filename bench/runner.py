"""Run every case against every server configuration, one fresh server per case."""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import procstat, servers
from bench.configs import ServerSpec
from bench.scenarios import Case, Context

log = logging.getLogger(__name__)

Record = dict[str, object]

SKIPPED = "skipped"  # status prefix of a case a server could not run here (not a failure)


def failed(record: Record) -> bool:
    """A case that errored; skipped ones did not."""
    status = str(record["status"])
    return status != "ok" and not status.startswith(SKIPPED)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs besides the cases themselves."""

    specs: list[ServerSpec]
    cases: list[Case]
    server_cpus: str
    redis_db: int
    concurrency: int
    connect_timeout: float
    log_dir: Path
    quiet_pct: float = 15.0
    quiet_wait_s: float = 0.0
    start_timeout: float = 30.0


def _redis_pid(db: int) -> int | None:
    """Pid of the Redis server, so Redis-backed layers show what Redis itself spent."""
    import redis

    client = redis.Redis.from_url(servers.redis_url(db), socket_timeout=5)
    try:
        return int(client.info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None
    finally:
        client.close()


async def _run_one(cfg: RunConfig, case: Case, spec: ServerSpec) -> Record:
    slug = f"{case.scenario}-{case.title.replace(' ', '_')}-{spec.label.replace('/', '_')}"
    log_path = cfg.log_dir / f"{slug}.log"
    missing = spec.missing()
    if missing:
        return {"status": f"{SKIPPED}: {missing}"}
    record: Record = {"status": "ok"}
    redis_pid = _redis_pid(cfg.redis_db) if spec.layer.startswith("redis") else None
    redis_before = procstat.sample(redis_pid) if redis_pid else None
    record["background_cpu_pct"] = await procstat.wait_for_quiet(cfg.quiet_pct, cfg.quiet_wait_s)
    if record["background_cpu_pct"] >= cfg.quiet_pct:
        log.warning("machine busy: other processes use %s%% CPU", record["background_cpu_pct"])
    started = time.monotonic()
    slot = servers.ServerSlot(spec, log_path, cfg.server_cpus, cfg.redis_db, cfg.start_timeout)
    try:
        async with slot:
            record["argv"] = slot.server.argv
            record["env"] = slot.server.env
            ctx = Context(slot, cfg.concurrency, cfg.connect_timeout, cfg.quiet_pct)
            record.update(await asyncio.wait_for(case.run(ctx), case.timeout_s))
    except Exception as exc:
        log.error("%s %s on %s failed: %r", case.scenario, case.title, spec.label, exc)
        record["status"] = f"error: {exc!r}"[:300]
    if redis_pid and redis_before:
        record["redis_cpu_pct"] = round(
            procstat.cpu_percent(redis_before, procstat.sample(redis_pid)), 1
        )
    record["elapsed_s"] = round(time.monotonic() - started, 1)
    # Exit statuses are recorded, never judged: the seed may die of its clients' mass
    # disconnect at the end of a case, and that is not a failure of the case.
    record["server_exits"] = slot.exits
    record["log_errors"], record["log_first_errors"] = slot.log_errors()
    record["log"] = str(log_path)
    return record


async def run_cases(cfg: RunConfig, meta: Record, emit: Callable[[Record], None]) -> list[Record]:
    """Run cases in order; within a case run every server back to back for side-by-side rows."""
    results = []
    for case in cfg.cases:
        for spec in cfg.specs:
            log.info("== %s %s on %s", case.scenario, case.title, spec.label)
            record: Record = {
                **meta,
                "scenario": case.scenario,
                "case": case.title,
                "kind": case.kind,
                "server": spec.label,
                "family": spec.family,
                "dialect": spec.dialect,
                "layer": spec.layer,
            }
            record.update(await _run_one(cfg, case, spec))
            results.append(record)
            emit(record)
    return results
