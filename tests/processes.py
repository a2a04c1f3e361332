"""Processes the tests start: ports that stay theirs, and no orphan when the test run dies."""

import ctypes
import random
import signal
import socket
import subprocess
from pathlib import Path

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# Resolved here, not in the child: between fork and exec only this call runs.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent() -> None:
    """A `preexec_fn`: the child gets SIGKILL when its parent ends, so no server outlives a
    test run killed before its teardown. The parent is the starting thread: start from the
    test's own thread, not from a worker thread that ends first."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def gone_or_zombie(pid: int) -> bool:
    """Whether `pid` has ended (a zombie its new parent has not reaped yet has ended too)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A free port on `host` below the kernel's ephemeral range: no outgoing connection takes
    it while a server stopped on it waits to start again on the same port."""
    low = _ephemeral_low()
    if low > 20000:
        for port in random.sample(range(20000, low), 50):
            with socket.socket() as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
