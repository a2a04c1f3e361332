"""Persist results: one JSON line per result and a Markdown section per run."""

import json
from pathlib import Path


def append_jsonl(path: Path, record: dict[str, object]) -> None:
    """Append one result as a JSON line."""
    with path.open("a") as out:
        out.write(json.dumps(record, sort_keys=True, default=str) + "\n")


def append_markdown(path: Path, section: str) -> None:
    """Append a run's section to BENCHMARKS.md, creating the file if needed."""
    if not path.exists():
        path.write_text("# Benchmarks\n\n## Results\n")
    with path.open("a") as out:
        out.write("\n" + section)
