"""The benchmark suite's own behaviour: the seed as a server kind, where records go, and a
ladder that never measures on users a mass disconnect took away."""

import asyncio
import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import cli, configs, fleet, record, report, servers
from bench.ladder import LadderPlan
from bench.scenarios import Context, ladder_case
from bench.swarm import Swarm
from bench.traffic import StepRules
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
CPUS = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))


def test_default_seed_binary_is_in_shared_anchors_beside_the_repository():
    assert configs.DEFAULT_SEED_BINARY == ROOT.parent / "shared/anchors/oatpp-async-server-rooms"


def test_default_servers_include_the_seed():
    assert "seed" in cli.DEFAULT_SERVERS.split(",")


def test_seed_is_its_binary_alone_on_port_8000_without_layer_or_environment(tmp_path):
    binary = tmp_path / "seed-binary"
    spec = configs.resolve("seed", "redis", {}, {"CHANNEL_CAPACITY": "5"}, binary)
    assert (spec.port, spec.dialect, spec.layer, spec.family) == (8000, "rooms", "none", "seed")
    assert spec.argv(12345, "0") == ["taskset", "-c", "0", str(binary)]
    assert spec.env_overrides("redis://unused") == {"PYTHONUNBUFFERED": "1"}
    assert configs.resolve("seed", "memory", {}, {}, binary) == spec  # one spec, any layers


def test_a_relative_seed_binary_is_taken_from_where_the_suite_was_started():
    spec = configs.resolve("seed", "memory", {}, {}, Path("seed-binary"))
    assert spec.binary == Path.cwd() / "seed-binary"


@pytest.mark.parametrize(
    ("create", "mode", "missing"),
    [
        (False, 0, True),
        (True, 0o644, True),
        (True, 0o755, False),
    ],
    ids=["absent", "not-executable", "executable"],
)
def test_seed_is_missing_unless_its_binary_is_an_executable_file(tmp_path, create, mode, missing):
    binary = tmp_path / "seed-binary"
    if create:
        binary.write_text("#!/bin/sh\n")
        binary.chmod(mode)
    note = configs.seed(binary).missing()
    assert (note is not None) == missing
    if missing:
        assert str(binary) in note and "--seed-binary" in note


def test_other_servers_are_never_missing():
    assert configs.resolve("rooms-serve", "memory", {}, {}).missing() is None


def test_free_ports_are_never_the_seeds():
    assert all(servers.free_port() != configs.SEED_PORT for _ in range(50))


def test_a_port_with_a_listener_is_not_free_and_is_once_it_closes():
    # Below the ephemeral range: no outgoing connection of a concurrent test takes it.
    port = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert not servers.port_is_free(port)
    assert servers.port_is_free(port)


async def test_a_fixed_port_held_by_another_process_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        command = "{python} -m bench.fanout_server --port {port}"
        spec = configs.ServerSpec("fixed", command, "rooms", "none", port=port)
        with pytest.raises(RuntimeError, match=f"port {port} is in use"):
            await servers.start(spec, tmp_path / "server.log", CPUS, 13, timeout=0.5)
    assert not (tmp_path / "server.log").exists()


async def test_a_server_hanging_up_mid_handshake_is_a_failed_connection():
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(ConnectionError):
            await fleet.open_client(Swarm(1), port, 0, 0, "u", 5.0)


async def test_a_ladder_step_after_a_mass_disconnect_runs_on_a_fresh_server(tmp_path):
    """The server dies at step 2, dropping everyone; the refining step 3 gets a new server
    and every user back, instead of measuring on nobody."""
    command = "{python} -m tests.drop_server --port {port} --die-at-step 2"
    spec = configs.ServerSpec("dropper", command, "rooms", "none")
    case = ladder_case(
        "S1",
        rooms=1,
        per_room=5,
        plan=LadderPlan(20, 2.0, 40, refine=1),
        # Latency limits out of reach: on a busy machine only losses may fail a step.
        rules=StepRules(0.5, drain_s=1.0, quiet_s=0.3, max_p99_ms=60e3, stop_p99_ms=60e3),
        settle_s=5.0,
    )
    slot = servers.ServerSlot(spec, tmp_path / "server.log", CPUS, 13, 30.0)
    async with slot:
        result = await case.run(Context(slot, 8, 5.0, quiet_pct=1000.0))
    steps = result["steps"]
    assert [s["rate_msg_s"] for s in steps] == [20.0, 40.0, 28.3]
    assert [s["fresh_server"] for s in steps] == [False, False, True]
    assert steps[1]["lost_connections"] == 5 and not steps[1]["ok"]
    assert steps[2]["ok"] and steps[2]["delivered"] == steps[2]["expected"] > 0
    assert result["restarts"] == 1
    assert len(slot.exits) == len(slot.logs) == 2 and slot.exits[0] == 1  # then SIGTERM
    assert "↻28.3✓" in report.ladder_table([_row(result, "dropper", "rooms")])


def _row(result: dict, server: str, family: str, **extra: object) -> dict:
    return {
        "scenario": "S1",
        "case": "1 room x 5",
        "server": server,
        "family": family,
        "layer": "none",
        "status": "ok",
        **result,
        **extra,
    }


def test_tables_compare_each_row_with_the_tutorial_and_the_seed():
    rows = [
        _row({"conn_per_s": 100.0, "rss_per_conn_kb": 30.0}, "tutorial-daphne", "tutorial"),
        _row({"conn_per_s": 400.0, "rss_per_conn_kb": 5.0}, "seed", "seed"),
        _row({"conn_per_s": 200.0, "rss_per_conn_kb": 15.0}, "rooms-serve/memory", "rooms"),
    ]
    lines = report.idle_table(rows).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[-4:] == [
        "ours/tutorial conn/s",
        "ours/tutorial RSS/conn",
        "ours/seed conn/s",
        "ours/seed RSS/conn",
    ]
    ratios = [[cell.strip() for cell in line.strip("|").split("|")][-4:] for line in lines[2:]]
    assert ratios == [
        ["ref", "ref", "×0.25", "×6.00"],
        ["×4.00", "×0.17", "ref", "ref"],
        ["×2.00", "×0.50", "×0.50", "×3.00"],
    ]


def test_a_skipped_seed_leaves_dashes_where_rooms_would_compare_with_it():
    rows = [
        _row({"status": "skipped: no executable seed server at /x"}, "seed", "seed"),
        _row({"cycles_per_s": 900.0}, "rooms-serve/memory", "rooms"),
    ]
    table = report.churn_table(rows)
    assert "skipped: no executable seed server at /x" in table
    assert table.splitlines()[-1].endswith("| – | – |")


@pytest.mark.parametrize(
    ("exits", "note"),
    [
        ([0], None),
        ([-15], None),
        ([-9], None),
        ([None], None),
        ([-6], "SIGABRT"),
        ([-11, 0], "SIGSEGV"),
        ([3], "status 3"),
    ],
    ids=["clean", "sigterm", "sigkill", "unknown", "abort", "segv-then-clean", "status"],
)
def test_exits_of_a_servers_own_making_are_noted_and_the_suites_stops_are_not(exits, note):
    rows = [_row({"server_exits": exits}, "seed", "seed", kind="idle")]
    text = report.render(rows, _meta())
    if note is None:
        assert "exited on their own" not in text
    else:
        assert f"- S1 1 room x 5 seed: {note}" in text


def _meta() -> dict:
    machine = {"cpu": "cpu", "nproc": 2, "kernel": "k", "python": "3", "commit": "abc"}
    return {
        "date": "2026-11-30 12:00 UTC",
        "mode": "quick",
        "command": "python -m bench",
        "machine": machine,
        "server_cpus": "0",
        "gen_cpus": "1",
    }


def test_a_summary_line_keeps_headline_figures_and_drops_steps_commands_and_paths():
    step = {"rate_msg_s": 10.0, "dlv_s": 990.0, "p50_ms": 1.0, "p99_ms": 2.0, "sent": 25}
    full = {
        **_meta(),
        **_row({"conn_per_s": 500.0, "peak_dlv_s": 990.0}, "seed", "seed", kind="ladder"),
        "run_id": "20261130T120000Z",
        "best": step,
        "limit": None,
        "steps": [step, step],
        "argv": ["taskset", "-c", "0", "/seed"],
        "env": {"PYTHONUNBUFFERED": "1"},
        "log": "/logs/x.log",
        "server_exits": [-6],
    }
    line = record.summary_line(full)
    assert line["best"] == {"rate_msg_s": 10.0, "dlv_s": 990.0, "p50_ms": 1.0, "p99_ms": 2.0}
    assert line["commit"] == "abc" and line["server_exits"] == [-6]
    assert line["conn_per_s"] == 500.0 and line["server"] == "seed"
    assert not {"steps", "argv", "env", "log", "limit", "machine", "command"} & line.keys()


def test_each_run_of_a_day_is_appended_to_that_days_markdown(tmp_path):
    path, _ = record.day_files(tmp_path / "results", "2026-11-30")
    record.append_markdown(path, "### first\n", "2026-11-30")
    record.append_markdown(path, "### second\n", "2026-11-30")
    text = path.read_text()
    assert text.startswith("# Benchmark runs of 2026-11-30\n")
    assert text.index("### first") < text.index("### second")
    assert text.endswith("### second\n")


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_missing_seed_binary_skips_its_cases_with_a_note_and_records_them(tmp_path):
    missing = tmp_path / "nowhere" / "oatpp-async-server-rooms"
    results = tmp_path / "results"
    done = _bench(
        "--servers=seed",
        f"--seed-binary={missing}",
        "--scenarios=S1,S4",
        "--quiet-wait=0",
        f"--results-dir={results}",
        f"--logs-dir={tmp_path / 'logs'}",
    )
    assert done.returncode == 0, done.stderr
    why = f"no executable seed server at {missing} (see --seed-binary)"
    note = f"skipped: {why}"
    assert done.stdout.count(note) == 2
    assert f"{why}: its cases are skipped" in done.stderr
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert done.stdout.strip() in (results / f"{day}.md").read_text()
    full = [json.loads(line) for line in (results / f"{day}.jsonl").read_text().splitlines()]
    summary = [json.loads(line) for line in (results / "summary.jsonl").read_text().splitlines()]
    assert [r["scenario"] for r in full] == [r["scenario"] for r in summary] == ["S1", "S4"]
    assert {r["status"] for r in summary} == {note}
    assert sorted(p.name for p in results.iterdir()) == [
        f"{day}.jsonl",
        f"{day}.md",
        record.SUMMARY,
    ]


def test_no_record_prints_the_tables_and_writes_nothing(tmp_path):
    done = _bench(
        "--servers=seed",
        f"--seed-binary={tmp_path / 'absent'}",
        "--scenarios=S1",
        "--quiet-wait=0",
        "--no-record",
        f"--results-dir={tmp_path / 'results'}",
        f"--logs-dir={tmp_path / 'logs'}",
    )
    assert done.returncode == 0, done.stderr
    assert "| S1 1 room x 100 | seed |" in done.stdout
    assert not (tmp_path / "results").exists()
