"""Command line: choose servers, layers and cases, run them, print and record the tables."""

import argparse
import logging
import os
import resource
import shlex
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from bench import configs, fleet, machine, profiles, record, report, runner

log = logging.getLogger("bench")

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_SERVERS = "tutorial-daphne,seed,rooms-daphne,rooms-serve,rooms-fast"
KEEP_LOG_RUNS = 10


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help="S1+S3 short ladders, S4 at 1k (default)"
    )
    mode.add_argument("--full", action="store_true", help="S1-S5 with finer ladders")
    p.add_argument(
        "--servers",
        default=DEFAULT_SERVERS,
        help="comma list: rooms-daphne, rooms-uvicorn, rooms-serve, rooms-fast, tutorial-daphne, "
        "tutorial-uvicorn, seed (the C++ server rooms re-implements), fanout-picows, "
        "or a --custom name",
    )
    p.add_argument(
        "--seed-binary",
        type=Path,
        default=configs.DEFAULT_SEED_BINARY,
        help="the seed's executable; its cases are skipped when it is missing",
    )
    p.add_argument("--layers", default="memory", help="comma list of memory, redis, redis-pubsub")
    p.add_argument("--scenarios", default=",".join(profiles.SCENARIOS), help="e.g. S1,S3")
    p.add_argument("--idle-sizes", default="1000,5000,10000,19000", help="S4 sizes in --full")
    p.add_argument(
        "--custom",
        action="append",
        default=[],
        metavar="NAME=CMD",
        help="extra server command with {port}, {bin} and {python} placeholders, "
        "e.g. a multi-process launcher; names starting 'tutorial' use the JSON dialect",
    )
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for every server, e.g. CHANNEL_CAPACITY=5000",
    )
    p.add_argument("--server-cpus", default="0", help="taskset CPU list for the server")
    p.add_argument("--gen-cpus", default="1", help="CPU list for this load generator")
    p.add_argument("--redis-db", type=int, default=13, help="Redis db flushed before each run")
    p.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="connection attempts in flight (Daphne listens with a backlog of 50)",
    )
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait before each case for other processes to go idle",
    )
    p.add_argument(
        "--quiet-pct", type=float, default=15.0, help="CPU %% of other processes counted as idle"
    )
    p.add_argument("--no-record", action="store_true", help="print only, write nothing")
    p.add_argument(
        "--results-dir",
        type=Path,
        default=BENCH_DIR / "results",
        help="where each day's tables (DAY.md), full records (DAY.jsonl) and the "
        "one-line-per-case summary.jsonl go",
    )
    p.add_argument(
        "--logs-dir",
        type=Path,
        default=BENCH_DIR / "logs",
        help=f"server logs, a directory per run; the last {KEEP_LOG_RUNS} runs are kept",
    )
    return p


def _cpus(text: str) -> set[int]:
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def _prepare_process(gen_cpus: str) -> None:
    """Pin the generator and lift its fd limit; servers inherit the limit, not the pinning."""
    available = os.sched_getaffinity(0)
    wanted = _cpus(gen_cpus) & available
    if wanted:
        os.sched_setaffinity(0, wanted)
    else:
        log.warning("generator CPUs %s unavailable; not pinned", gen_cpus)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _specs(args: argparse.Namespace) -> list[configs.ServerSpec]:
    custom = dict(item.split("=", 1) for item in args.custom)
    extra_env = dict(item.split("=", 1) for item in args.server_env)
    specs = []
    for name in filter(None, args.servers.split(",")):
        if (
            name.startswith("rooms")
            and name not in custom
            and not (configs.REPO / "chatproject" / "asgi.py").exists()
        ):
            log.warning("skipping %s: chatproject/asgi.py does not exist yet", name)
            continue
        for layer in filter(None, args.layers.split(",")):
            if layer not in configs.LAYERS:
                raise SystemExit(f"unknown layer {layer!r}")
            spec = configs.resolve(name, layer, custom, extra_env, args.seed_binary)
            if spec not in specs:
                specs.append(spec)
    for spec in specs:
        if spec.missing():
            log.warning("%s: its cases are skipped", spec.missing())
    return specs


def _prune_logs(root: Path) -> None:
    runs = sorted(p for p in root.glob("*") if p.is_dir())
    for old in runs[:-KEEP_LOG_RUNS]:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmark and report it; exit status 1 if any case errored."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("picows").setLevel(logging.WARNING)
    mode = "full" if args.full else "quick"
    wanted = set(args.scenarios.upper().split(","))
    if mode == "full":
        sizes = tuple(int(n) for n in args.idle_sizes.split(","))
        cases = profiles.full(sizes)
    else:
        cases = profiles.quick()
    cases = [c for c in cases if c.scenario in wanted]
    try:
        specs = _specs(args)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    if not specs or not cases:
        raise SystemExit("nothing to run")

    facts = machine.describe(configs.REPO)
    _prepare_process(args.gen_cpus)
    now = datetime.now(UTC)
    run_id = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y-%m-%d")
    markdown, full = record.day_files(args.results_dir, day)
    log_root = args.logs_dir
    meta = {
        "run_id": run_id,
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        "mode": mode,
        "command": "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": facts,
        "server_cpus": args.server_cpus,
        "gen_cpus": args.gen_cpus,
    }
    cfg = runner.RunConfig(
        specs=specs,
        cases=cases,
        server_cpus=args.server_cpus,
        redis_db=args.redis_db,
        concurrency=args.concurrency,
        connect_timeout=args.connect_timeout,
        log_dir=log_root / run_id,
        quiet_pct=args.quiet_pct,
        quiet_wait_s=args.quiet_wait,
    )

    def emit(result: dict[str, object]) -> None:
        if not args.no_record:
            record.append_jsonl(full, result)
            record.append_jsonl(args.results_dir / record.SUMMARY, record.summary_line(result))

    fleet.tune_collector()
    results = uvloop.run(runner.run_cases(cfg, meta, emit))
    section = report.render(results, meta)
    print(section)
    if not args.no_record:
        record.append_markdown(markdown, section, day)
        log.info("recorded in %s, %s and %s", markdown, full, args.results_dir / record.SUMMARY)
    _prune_logs(log_root)
    return 1 if any(runner.failed(r) for r in results) else 0
