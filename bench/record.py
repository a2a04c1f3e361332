"""Persist results in bench/results/: per day, each run's Markdown section and every record
with all its ladder steps (that JSON is not committed); and one compact line per case and
server in summary.jsonl, which is.

The full records run to a megabyte in a busy day and are only read while a run is studied;
the summary keeps what the tables show, so every run's headline figures stay in git.
"""

import json
from pathlib import Path

SUMMARY = "summary.jsonl"

# Kept in summary.jsonl: a record's identity, then its figures (those missing are left out).
# The run's command is in its section of the day's Markdown, found by the date.
SUMMARY_KEYS = (
    "run_id",
    "date",
    "mode",
    "scenario",
    "case",
    "kind",
    "server",
    "family",
    "layer",
    "status",
    "noisy",
    "conns_ok",
    "conns_failed",
    "conn_per_s",
    "connect_p99_ms",
    "join_s",
    "rss_per_conn_kb",
    "alive_after_hold",
    "peak_dlv_s",
    "lossless_dlv_s",
    "lossless_p99_ms",
    "restarts",
    "cycles",
    "cycles_per_s",
    "churn_failures",
    "notices",
    "notices_expected",
    "rss_before_mb",
    "rss_after_mb",
    "log_errors",
    "server_exits",
)
# Of the best clean step and the first step that was not clean.
STEP_KEYS = ("rate_msg_s", "dlv_s", "p50_ms", "p99_ms", "server_cpu_pct", "reason")


def day_files(results_dir: Path, day: str) -> tuple[Path, Path]:
    """The Markdown file and the full JSON lines file of one UTC day (YYYY-MM-DD)."""
    return results_dir / f"{day}.md", results_dir / f"{day}.jsonl"


def append_jsonl(path: Path, record: dict[str, object]) -> None:
    """Append one result as a JSON line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(record, sort_keys=True, default=str) + "\n")


def summary_line(record: dict[str, object]) -> dict[str, object]:
    """The compact form of a record: no ladder steps, command lines, environment or paths."""
    line = {key: record[key] for key in SUMMARY_KEYS if record.get(key) is not None}
    machine = record.get("machine")
    if isinstance(machine, dict):
        line["commit"] = machine.get("commit")
        line["cpu"] = machine.get("cpu")
    for name in ("best", "limit"):
        step = record.get(name)
        if isinstance(step, dict):
            line[name] = {key: step[key] for key in STEP_KEYS if key in step}
    return line


def append_markdown(path: Path, section: str, day: str) -> None:
    """Add a run's section at the end of its day's file, creating the file if needed."""
    if path.exists():
        document = path.read_text().rstrip("\n") + "\n\n"
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = (
            f"# Benchmark runs of {day}\n\nAppended by `python -m bench`, newest last. "
            "How they were measured, and the latest summary: BENCHMARKS.md.\n\n"
        )
    path.write_text(document + section.rstrip("\n") + "\n")
