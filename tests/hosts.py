"""Several "hosts" on one machine: each a network namespace with its own address.

The hosts share a private /24 taken from TEST_HOSTS_NETWORK (10.231.0.0/16 by default, the
first /24 no interface here uses): a bridge in this namespace holds its .1 (`Network.address`),
host n its .(11 + n), each through a veth pair, with loopback up. Bind a service every host
must reach (a Redis of the test's own, never the shared one on 127.0.0.1) to
`Network.address`. Nothing routes beyond the bridge.

Where namespaces cannot be made (not root, no iproute2), the same API gives loopback
addresses instead (127.0.1.1, hosts 127.0.1.11, ...) in this one network stack, and
`Network.isolated` is False: a server must then bind its host's address, not 0.0.0.0.

Every namespace and link is named PREFIX + its owner's pid + a sequence number, so a run that
died before its teardown leaves nothing behind for long: the next network sweeps it away, and
never one whose owner still runs. Run as `python -m tests.hosts up|down|exec HOST CMD...`
to bring up hosts by hand (docs/scaling.md, "Several hosts on one machine").
"""

import argparse
import fcntl
import ipaddress
import itertools
import os
import re
import signal
import string
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests import processes

# With the owner's pid (5 base-36 digits at most), a sequence digit and "-br": 15 characters,
# Linux's limit for a link's name.
PREFIX = "rmhost"
POOL = ipaddress.ip_network(os.environ.get("TEST_HOSTS_NETWORK", "10.231.0.0/16"))
LOOPBACK = ipaddress.ip_network("127.0.1.0/24")
FIRST_HOST = 11  # host n (from 0) has its subnet's address 11 + n
MAX_HOSTS = 16
TIMEOUT = 10.0  # seconds for an `ip` command, a host's run(), a process's end after SIGKILL

# A namespace or link of ours: the network's tag, then "br" or a host's name.
NAME = re.compile(rf"(?P<tag>{PREFIX}[0-9a-z]{{2,6}})-(br|[a-z])")

_sequence = itertools.count()


def _base36(number: int) -> str:
    digits = string.digits + string.ascii_lowercase
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
        if not number:
            return text


def network_tag(owner: int, sequence: int) -> str:
    """The name every namespace and link of a network starts with: its owner's pid, and one
    of 36 networks that owner may have at once, in base 36."""
    return f"{PREFIX}{_base36(owner)}{_base36(sequence % 36)}"


MANUAL_TAG = network_tag(0, 0)  # made by hand, kept until `python -m tests.hosts down`


class HostsWarning(UserWarning):
    """The hosts are loopback addresses in one network stack, not namespaces."""


@dataclass
class Host:
    """One host: a name ("a", "b", ...), its address, its namespace (None on loopback)."""

    name: str
    address: str
    namespace: str | None
    processes: list[subprocess.Popen] = field(default_factory=list, repr=False)

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` as run in this host."""
        if self.namespace is None:
            return list(argv)
        return ["ip", "netns", "exec", self.namespace, *argv]

    def popen(self, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start `argv` in this host. `ip netns exec` execs the command itself, so the pid is
        the command's and `kill()` is its SIGKILL. Killed when the network goes down."""
        process = subprocess.Popen(
            self.command(argv), preexec_fn=processes.die_with_parent, **kwargs
        )
        self.processes.append(process)
        return process

    def run(
        self, argv: Sequence[str], timeout: float = TIMEOUT, **kwargs
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` in this host to its end; its output as text."""
        return subprocess.run(
            self.command(argv), capture_output=True, text=True, timeout=timeout, **kwargs
        )


class Network:
    """`count` hosts on one private subnet; a context manager that always takes them down."""

    def __init__(self, count: int = 3, *, namespaces: bool = True, tag: str | None = None) -> None:
        if not 1 <= count <= MAX_HOSTS:
            raise ValueError(f"between 1 and {MAX_HOSTS} hosts, not {count}")
        self.count = count
        self.namespaces = namespaces
        self.tag = tag or network_tag(os.getpid(), next(_sequence))
        self.address = ""
        self.hosts: list[Host] = []
        self.isolated = False
        self.fallback_reason = ""
        self._processes: list[subprocess.Popen] = []

    def __enter__(self) -> "Network":
        return self.up()

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    def up(self) -> "Network":
        """Namespaces if they can be made, loopback addresses otherwise (`fallback_reason`)."""
        if self.namespaces:
            try:
                self._up_namespaces()
                return self
            except OSError as exc:  # no permission, no `ip`, no bridge or veth in the kernel
                self.down()
                self.fallback_reason = str(exc)
            except BaseException:
                self.down()
                raise
        else:
            self.fallback_reason = "namespaces were not asked for"
        self.address = str(LOOPBACK[1])
        self.hosts = [self._host(index, LOOPBACK, namespaced=False) for index in range(self.count)]
        return self

    def _up_namespaces(self) -> None:
        bridge = f"{self.tag}-br"
        with sweeping():
            sweep()
            subnet = _free_subnet()
            _ip("link", "add", bridge, "type", "bridge")
            _ip("addr", "add", f"{subnet[1]}/{subnet.prefixlen}", "dev", bridge)
        _ip("link", "set", bridge, "up")
        self.address = str(subnet[1])
        for index in range(self.count):
            host = self._host(index, subnet, namespaced=True)
            namespace = veth = host.namespace
            _ip("netns", "add", namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _ip("link", "set", veth, "master", bridge, "up")
            _ip("-n", namespace, "addr", "add", f"{host.address}/{subnet.prefixlen}", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            self.hosts.append(host)
        self.isolated = True

    def _host(self, index: int, subnet: ipaddress.IPv4Network, namespaced: bool) -> Host:
        name = string.ascii_lowercase[index]
        namespace = f"{self.tag}-{name}" if namespaced else None
        return Host(name, str(subnet[FIRST_HOST + index]), namespace, self._processes)

    def host(self, name: str) -> Host:
        """The host called `name` ("a", "b", ...)."""
        return next(host for host in self.hosts if host.name == name)

    def down(self) -> None:
        """SIGKILL every process started in a host, then remove the namespaces (and whatever
        still runs in them), the veths and the bridge."""
        try:
            for process in self._processes:
                process.kill()
                process.wait(TIMEOUT)
        finally:
            self._processes.clear()
            remove(self.tag)
            self.hosts = []
            self.isolated = False

    def names(self) -> list[str]:
        """The namespaces and links of this network that exist: none once it is down."""
        return [name for name in _namespaces() + _links() if name.startswith(f"{self.tag}-")]


def remove(tag: str) -> None:
    """Remove the namespaces and links named `tag`-*, killing every process left in them."""
    namespaces = [name for name in _namespaces() if name.startswith(f"{tag}-")]
    for namespace in namespaces:
        for pid in _ip("netns", "pids", namespace, check=False).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    # The root ends first: a veth deleted with its namespace goes only when the kernel
    # gets round to it, and could still hold the bridge.
    for link in sorted(_links(), key=lambda name: name.endswith("-br")):
        if link.startswith(f"{tag}-"):
            _ip("link", "del", link, check=False)
    for namespace in namespaces:
        _ip("netns", "del", namespace, check=False)


def sweep() -> None:
    """Remove every network of ours whose owner is gone (a run killed before its teardown);
    those of live owners, and the one made by hand, stay."""
    names = (NAME.fullmatch(name) for name in _namespaces() + _links())
    for tag in {name["tag"] for name in names if name}:
        owner = int(tag.removeprefix(PREFIX)[:-1], 36)  # the pid, then a sequence number
        if owner != 0 and not _alive(owner):
            remove(tag)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _ip(*args: str, check: bool = True) -> str:
    """Run `ip`; its output. An `ip` that fails or is missing is an OSError when `check`,
    nothing otherwise."""
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=TIMEOUT)
    except FileNotFoundError:
        if check:
            raise
        return ""
    if check and done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _namespaces() -> list[str]:
    return [line.split()[0] for line in _ip("netns", "list", check=False).splitlines() if line]


def _links() -> list[str]:
    # "7: rmhost1a0-a@if6: <BROADCAST,..." -> "rmhost1a0-a"
    lines = _ip("-o", "link", "show", check=False).splitlines()
    return [line.split(":")[1].strip().split("@")[0] for line in lines]


def _free_subnet() -> ipaddress.IPv4Network:
    """The first /24 of POOL that overlaps no address of this namespace."""
    used = [
        ipaddress.ip_interface(line.split()[3]).network
        for line in _ip("-o", "-4", "addr", "show").splitlines()
    ]
    for subnet in POOL.subnets(new_prefix=max(24, POOL.prefixlen)):
        if not any(subnet.overlaps(network) for network in used):
            return subnet
    raise OSError(f"no free /24 left in TEST_HOSTS_NETWORK={POOL}")


@contextmanager
def sweeping() -> Iterator[None]:
    """One network at a time sweeps, picks its subnet and claims it with the bridge; held,
    no sweep of another test or run can happen."""
    # Read-only: a lock file another user made still locks (flock needs no write access).
    descriptor = os.open(Path(tempfile.gettempdir()) / f"{PREFIX}.lock", os.O_RDONLY | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.hosts",
        description="Hosts as network namespaces on a private bridge, by hand (run as root).",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="bring up the hosts (replacing any made before)")
    up.add_argument("--count", type=int, default=3)
    actions.add_parser("down", help="remove the hosts, and whatever runs in them")
    run = actions.add_parser("exec", help="run a command in a host: exec a ip addr")
    run.add_argument("host")
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    if args.action == "up":
        remove(MANUAL_TAG)
        network = Network(args.count, tag=MANUAL_TAG).up()
        if not network.isolated:
            print(f"no namespaces: {network.fallback_reason}", file=sys.stderr)
            return 1
        print(f"bridge {MANUAL_TAG}-br  {network.address}")
        for host in network.hosts:
            print(f"host {host.name}  {host.address}  (ip netns exec {host.namespace} ...)")
    elif args.action == "down":
        remove(MANUAL_TAG)
    else:
        command = args.command or [os.environ.get("SHELL", "/bin/sh")]
        os.execvp("ip", ["ip", "netns", "exec", f"{MANUAL_TAG}-{args.host}", *command])
    return 0


if __name__ == "__main__":
    sys.exit(main())
