"""Persist results: one JSON line per result and a Markdown section per run."""

import json
from pathlib import Path

RESULTS_HEADING = "## Results"


def append_jsonl(path: Path, record: dict[str, object]) -> None:
    """Append one result as a JSON line."""
    with path.open("a") as out:
        out.write(json.dumps(record, sort_keys=True, default=str) + "\n")


def insert_section(document: str, section: str) -> str:
    """Put a run's section at the end of the Results part, before any later '## ' heading."""
    if RESULTS_HEADING not in document:
        document = document.rstrip("\n") + f"\n\n{RESULTS_HEADING}\n"
    start = document.index(RESULTS_HEADING) + len(RESULTS_HEADING)
    following = document.find("\n## ", start)
    if following < 0:
        return document.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    head, tail = document[:following].rstrip("\n"), document[following + 1 :]
    return f"{head}\n\n{section.rstrip()}\n\n{tail}"


def append_markdown(path: Path, section: str) -> None:
    """Add a run's section to the Results part of BENCHMARKS.md, creating the file if needed."""
    document = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(insert_section(document, section))
