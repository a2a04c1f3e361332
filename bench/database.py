"""A fresh, migrated SQLite database per case, so stored history never carries over."""

import asyncio
import shutil
import sys
from pathlib import Path

from bench.configs import REPO


async def migrate(env: dict[str, str], path: Path, timeout: float) -> None:
    """Create `path` and apply the product's migrations to it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "manage.py",
        "migrate",
        "--noinput",
        cwd=REPO,
        env={**env, "DATABASE_URL": f"sqlite:///{path}"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"migrate failed: {output.decode(errors='replace')[-500:]}")


_migrated: set[Path] = set()


async def fresh(env: dict[str, str], template: Path, dest: Path, timeout: float) -> str:
    """Copy the run's migrated template (made on first use) to `dest`; return its URL."""
    if template not in _migrated:
        await migrate(env, template, timeout)
        _migrated.add(template)
    shutil.copyfile(template, dest)
    return f"sqlite:///{dest}"
