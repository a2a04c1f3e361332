"""Identify the machine and code revision each result was measured on."""

import os
import platform
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def git_commit(repo: Path) -> str:
    """Short HEAD hash, marked dirty when the tree has changes; 'none' before the first commit."""
    try:
        head = _git(repo, "rev-parse", "--short", "HEAD")
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "none"
    return f"{head}-dirty" if dirty else head


def describe(repo: Path) -> dict[str, object]:
    """Machine facts recorded next to every result."""
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": git_commit(repo),
    }
