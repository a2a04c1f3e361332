"""Render a run's results as Markdown tables, ours side by side with the references: the
Channels tutorial and the C++ seed."""

import signal
from collections.abc import Callable

Record = dict[str, object]
Metric = Callable[[Record], object]

REFERENCES = ("tutorial", "seed")  # families every row is compared with, a column each


def _fmt(value: object, digits: int = 1) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _reference(record: Record, results: list[Record], family: str) -> Record | None:
    """The `family` result for the same case, preferring the same channel layer."""
    peers = [
        r
        for r in results
        if r["family"] == family
        and r["scenario"] == record["scenario"]
        and r["case"] == record["case"]
        and r["status"] == "ok"
    ]
    same_layer = [r for r in peers if r["layer"] == record["layer"]]
    return (same_layer or peers or [None])[0]


def _ratio(record: Record, results: list[Record], metric: Metric, family: str) -> str:
    if record["family"] == family:
        return "ref"
    ref = _reference(record, results, family)
    if ref is None or record["status"] != "ok":
        return "–"
    ours, theirs = metric(record), metric(ref)
    if not isinstance(ours, (int, float)) or not isinstance(theirs, (int, float)) or not theirs:
        return "–"
    return f"×{ours / theirs:.2f}"


def _ratio_headers(*what: str) -> list[str]:
    return [f"ours/{family} {w}" for family in REFERENCES for w in what]


def _ratios(record: Record, results: list[Record], *metrics: Metric) -> list[str]:
    return [_ratio(record, results, m, family) for family in REFERENCES for m in metrics]


def _field(key: str) -> Metric:
    return lambda record: record.get(key)


def _clean_dlv(record: Record) -> object:
    return _best(record).get("dlv_s", 0.0)


def _best(record: Record) -> Record:
    return record.get("best") or {}  # type: ignore[return-value]


def _server(r: Record) -> str:
    """Server label, flagged when other processes competed for the CPUs."""
    return f"{r['server']} ⚠" if r.get("noisy") else str(r["server"])


def _conns(r: Record) -> str:
    return f"{_fmt(r.get('conns_ok'))}/{_fmt(r.get('conns_failed'))}"


def _ladder_trace(r: Record) -> str:
    steps = r.get("steps") or []
    marks = [f"{_fresh(s)}{s['rate_msg_s']:g}{_mark(s)}" for s in steps]  # type: ignore[union-attr]
    return " ".join(marks)


def _fresh(step: Record) -> str:
    """↻ before a step that ran on a fresh server, every user connected again."""
    return "↻" if step.get("fresh_server") else ""


def _mark(step: Record) -> str:
    """✓ clean, ~ every message delivered but p99 over the limit, ✗ messages or links lost."""
    if step["ok"]:
        return "✓"
    return "~" if step["lossless"] else "✗"


def _lossless(r: Record) -> str:
    if r.get("lossless_msg_s") is None:
        return "–"
    rate, dlv, p99 = r["lossless_msg_s"], r["lossless_dlv_s"], r["lossless_p99_ms"]
    return f"{rate:g} msg/s = {_fmt(dlv, 0)} dlv/s (p99 {_fmt(p99, 0)} ms)"


def _failure(r: Record) -> str:
    if r["status"] != "ok":
        return str(r["status"])
    limit = r.get("limit")
    if not limit:
        return "none up to ceiling"
    return f"{limit['rate_msg_s']:g} msg/s: {limit['reason']}"  # type: ignore[index]


def _connect_latency(r: Record) -> str:
    keys = ("connect_p50_ms", "connect_p99_ms", "connect_max_ms")
    return "/".join(_fmt(r.get(k), 0) for k in keys)


def _joined(r: Record) -> str:
    if r.get("join_expected") is None:
        return _fmt(r.get("join_s"), 2)
    return f"{_fmt(r.get('join_s'), 2)} ({_fmt(r['join_notices'])}/{_fmt(r['join_expected'])})"


def ladder_table(results: list[Record]) -> str:
    """S1-S3: the highest offered rate each server held cleanly."""
    header = [
        "case",
        "server",
        "conns ok/fail",
        "conn/s",
        "all joined s (notices)",
        "clean msg/s",
        "deliveries/s",
        "delivered/expected",
        "p50 ms",
        "p99 ms",
        "max ms",
        "srv CPU %",
        "srv RSS MB",
        "RSS/conn KB",
        "gen CPU %",
        "others CPU % (max)",
        "first failure",
        "max lossless",
        "peak dlv/s",
        "log errs",
        *_ratio_headers("clean dlv/s", "peak dlv/s"),
        "ladder msg/s",
    ]
    rows = []
    for r in results:
        b = _best(r)
        rows.append(
            [
                f"{r['scenario']} {r['case']}",
                _server(r),
                _conns(r),
                _fmt(r.get("conn_per_s")),
                _joined(r),
                _fmt(b.get("rate_msg_s")),
                _fmt(b.get("dlv_s"), 0),
                f"{_fmt(b.get('delivered'))}/{_fmt(b.get('expected'))}",
                _fmt(b.get("p50_ms"), 2),
                _fmt(b.get("p99_ms"), 2),
                _fmt(b.get("max_ms"), 2),
                _fmt(b.get("server_cpu_pct")),
                _fmt(b.get("server_rss_mb")),
                _fmt(r.get("rss_per_conn_kb")),
                _fmt(b.get("gen_cpu_pct")),
                _fmt(r.get("others_cpu_max_pct")),
                _failure(r),
                _lossless(r),
                _fmt(r.get("peak_dlv_s"), 0),
                _fmt(r.get("log_errors")),
                *_ratios(r, results, _clean_dlv, _field("peak_dlv_s")),
                _ladder_trace(r),
            ]
        )
    return _table(header, rows)


def idle_table(results: list[Record]) -> str:
    """S4: connection rate and memory cost of idle users."""
    header = [
        "case",
        "server",
        "conns ok/fail",
        "conn/s",
        "connect p50/p99/max ms",
        "all joined s (notices)",
        "RSS base MB",
        "RSS MB",
        "RSS/conn KB",
        "srv CPU % (connect)",
        "gen CPU % (connect)",
        "others CPU % (connect)",
        "alive after hold",
        "log errs",
        *_ratio_headers("conn/s", "RSS/conn"),
    ]
    rows = [
        [
            f"{r['scenario']} {r['case']}",
            _server(r),
            _conns(r),
            _fmt(r.get("conn_per_s")),
            _connect_latency(r),
            _joined(r),
            _fmt(r.get("rss_base_mb")),
            _fmt(r.get("rss_hold_mb")),
            _fmt(r.get("rss_per_conn_kb")),
            _fmt(r.get("connect_cpu_pct")),
            _fmt(r.get("connect_gen_cpu_pct")),
            _fmt(r.get("connect_others_cpu_pct")),
            _fmt(r.get("alive_after_hold")) if r["status"] == "ok" else str(r["status"]),
            _fmt(r.get("log_errors")),
            *_ratios(r, results, _field("conn_per_s"), _field("rss_per_conn_kb")),
        ]
        for r in results
    ]
    return _table(header, rows)


def churn_table(results: list[Record]) -> str:
    """S5: connect/join/close cycles and whether memory comes back."""
    header = [
        "case",
        "server",
        "cycles",
        "cycles/s",
        "failures",
        "notices got/expected",
        "srv CPU %",
        "others CPU %",
        "RSS before → after MB",
        "lost conns",
        "log errs",
        *_ratio_headers("cycles/s"),
    ]
    rows = [
        [
            f"{r['scenario']} {r['case']}",
            _server(r),
            _fmt(r.get("cycles")),
            _fmt(r.get("cycles_per_s")),
            _fmt(r.get("churn_failures") or 0) if r["status"] == "ok" else str(r["status"]),
            f"{_fmt(r.get('notices'))}/{_fmt(r.get('notices_expected'))}",
            _fmt(r.get("churn_cpu_pct")),
            _fmt(r.get("churn_others_cpu_pct")),
            f"{_fmt(r.get('rss_before_mb'))} → {_fmt(r.get('rss_after_mb'))}",
            _fmt(r.get("lost_connections")),
            _fmt(r.get("log_errors")),
            *_ratios(r, results, _field("cycles_per_s")),
        ]
        for r in results
    ]
    return _table(header, rows)


def _log_notes(results: list[Record]) -> str:
    notes = []
    for r in results:
        if r.get("log_errors"):
            lines = r.get("log_first_errors") or []
            first = "; ".join(f"`{line}`" for line in lines[:2])  # type: ignore[index]
            where = f"{r['scenario']} {r['case']} {r['server']}"
            notes.append(f"- {where}: {r['log_errors']} error lines, e.g. {first}")
    return "\n".join(["Server log errors:", *notes]) if notes else ""


# Exit statuses of a server stopped by the suite: SIGTERM, then SIGKILL if it lingers.
_STOPPED = {0, -signal.SIGTERM, -signal.SIGKILL}


def _exit_name(code: int) -> str:
    if code >= 0:
        return f"status {code}"
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _exit_notes(results: list[Record]) -> str:
    """Servers that died of a signal of their own (the seed, of mass disconnects)."""
    notes = []
    for r in results:
        exits: list[int | None] = r.get("server_exits") or []  # type: ignore[assignment]
        died = [_exit_name(c) for c in exits if c is not None and c not in _STOPPED]
        if died:
            notes.append(f"- {r['scenario']} {r['case']} {r['server']}: {', '.join(died)}")
    if not notes:
        return ""
    title = "Servers that exited on their own (recorded, not counted as failures):"
    return "\n".join([title, *notes])


def render(results: list[Record], meta: Record) -> str:
    """One Markdown section for a run: provenance, then a table per kind of case."""
    machine = meta["machine"]
    parts = [
        f"### {meta['date']} · {meta['mode']}",
        "",
        f"- Command: `{meta['command']}`",
        f"- Machine: {machine['cpu']}, nproc {machine['nproc']}, kernel {machine['kernel']}, "  # type: ignore[index]
        f"Python {machine['python']}",  # type: ignore[index]
        f"- Commit: {machine['commit']}",  # type: ignore[index]
        f"- Server on CPU {meta['server_cpus']}, generator on CPU {meta['gen_cpus']}",
        "",
    ]
    for kind, render_kind in (
        ("ladder", ladder_table),
        ("idle", idle_table),
        ("churn", churn_table),
    ):
        rows = [r for r in results if r["kind"] == kind]
        if rows:
            parts += [render_kind(rows), ""]
    for notes in (_log_notes(results), _exit_notes(results)):
        if notes:
            parts += [notes, ""]
    return "\n".join(parts)
