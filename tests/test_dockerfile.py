"""The Dockerfile (no engine runs here, so it is linted, and kept in step with make run)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HADOLINT = Path(sys.executable).with_name("hadolint")


def test_dockerfile_passes_hadolint():
    result = subprocess.run([str(HADOLINT), "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_serves_like_make_run():
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    # The launcher (graceful shutdown on SIGTERM, which Docker sends on stop), not bare daphne.
    assert "exec python -m rooms.server.workers --host 0.0.0.0 --port 8000" in (dockerfile)
    assert "$(PY) -m rooms.server.workers --host $(HOST) --port $(PORT)" in makefile
    assert "USER 10001" in dockerfile
    # Neither shows Django's debug page to the network.
    assert "DEBUG=0" in dockerfile
    assert "run serve: export DEBUG := 0" in makefile
