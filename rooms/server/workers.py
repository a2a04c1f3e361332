"""The server command: `python -m rooms.server.workers [--workers N] [--server S] [options]`.

Each worker is `python -m rooms.server.fast` (uvicorn, uvloop and picows; `--server serve`:
rooms.server.serve, Daphne), given the options this command does not know, serving its own
listening socket; all sockets are bound to the same address with SO_REUSEPORT, so the
kernel spreads new connections evenly across the processes. The sockets listen with a
backlog of `--backlog` (Daphne's own is 50, which a burst of connections overflows).
Rooms span processes through the Redis channel layer, so more than one worker needs
REDIS_URL. SIGTERM and SIGINT are passed on to every worker; a worker whose supervisor dies
(even by SIGKILL) gets SIGTERM from the kernel and shuts down as for any SIGTERM (Linux).
"""

import argparse
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
from functools import partial

logger = logging.getLogger(__name__)

APPLICATION = "chatproject.asgi:application"
SERVERS = ("fast", "serve")  # rooms.server.fast and rooms.server.serve
PR_SET_PDEATHSIG = 1  # prctl(2)
# Resolved in the supervisor, not in the child: between fork and exec only the call runs.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A bound, listening TCP socket that other sockets may share the address of."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def terminated_with(parent: int) -> None:
    """In a worker, before it runs: SIGTERM when `parent` exits, so that no worker outlives
    its supervisor holding the port and its members' names."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m rooms.server.workers", description=__doc__)
    parser.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backlog", type=int, default=4096, help="listen backlog per worker")
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default="fast",
        help="each worker's launcher: fast (uvicorn, picows) or serve (Daphne)",
    )
    return parser.parse_known_args(argv)


def main(argv: list[str]) -> int:
    """Start the workers, pass signals on, and exit when they have all exited."""
    args, server_args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
    from django.conf import settings

    if args.workers > 1 and settings.CHANNEL_LAYER == "memory":
        raise SystemExit(
            "rooms.server.workers: more than one worker needs REDIS_URL (rooms span processes)"
        )
    sockets = [listening_socket(args.host, args.port, args.backlog) for _ in range(args.workers)]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                f"rooms.server.{args.server}",
                "--fd",
                str(sock.fileno()),
                *server_args,
                APPLICATION,
            ],
            pass_fds=[sock.fileno()],
            process_group=0,  # a terminal's Ctrl-C reaches only us; we pass it on once
            preexec_fn=partial(terminated_with, os.getpid()),
        )
        for sock in sockets
    ]
    for sock in sockets:
        sock.close()

    stopping = False

    def forward(signum: int, _frame=None) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    pid, status = os.wait()
    if not stopping:
        # A worker died on its own: stop the rest, so that a supervisor above restarts all.
        logger.error("worker %d exited with status %d; stopping the others", pid, status)
        forward(signal.SIGTERM)
    codes = [os.waitstatus_to_exitcode(status)] + [w.wait() for w in workers if w.pid != pid]
    return max(codes, key=abs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
