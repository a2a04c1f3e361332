"""The benchmark suite's own behaviour: where records go."""

from bench import record


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
        "run_id": "20261130T120000Z",
        "scenario": "S1",
        "case": "1 room x 5",
        "kind": "ladder",
        "server": "rooms-serve/memory",
        "family": "rooms",
        "layer": "memory",
        "status": "ok",
        "conn_per_s": 500.0,
        "peak_dlv_s": 990.0,
        "best": step,
        "limit": None,
        "steps": [step, step],
        "argv": ["taskset", "-c", "0", "python"],
        "env": {"PYTHONUNBUFFERED": "1"},
        "log": "/logs/x.log",
    }
    line = record.summary_line(full)
    assert line["best"] == {"rate_msg_s": 10.0, "dlv_s": 990.0, "p50_ms": 1.0, "p99_ms": 2.0}
    assert line["commit"] == "abc" and line["run_id"] == "20261130T120000Z"
    assert line["conn_per_s"] == 500.0 and line["server"] == "rooms-serve/memory"
    assert not {"steps", "argv", "env", "log", "limit", "machine", "command"} & line.keys()


def test_each_run_of_a_day_is_appended_to_that_days_markdown(tmp_path):
    path, _ = record.day_files(tmp_path / "results", "2026-11-30")
    record.append_markdown(path, "### first\n", "2026-11-30")
    record.append_markdown(path, "### second\n", "2026-11-30")
    text = path.read_text()
    assert text.startswith("# Benchmark runs of 2026-11-30\n")
    assert text.index("### first") < text.index("### second")
    assert text.endswith("### second\n")
