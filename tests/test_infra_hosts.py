"""The hosts harness (tests/hosts.py): hosts with their own addresses reach each other and a
Redis on their network, a process in a host dies by SIGKILL, and nothing of ours is left."""

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hosts import MANUAL_TAG, Network, network_tag, sweeping
from tests.processes import gone_or_zombie
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
# Accepts one connection on the address given, after printing its port; sends back the
# address the connection came from.
SERVER = """
import socket, sys
server = socket.create_server((sys.argv[1], 0))
print(server.getsockname()[1], flush=True)
connection, (peer, _) = server.accept()
connection.sendall(peer.encode())
"""
CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as connection:
    print(connection.recv(100).decode())
"""
# Another test run's network: up until a line arrives on stdin.
HOLD = """
from tests.hosts import Network
with Network(1) as network:
    print(network.tag, network.isolated, network.address, flush=True)
    input()
"""


def read_line(process: subprocess.Popen, timeout: float = 10.0) -> str:
    """The process's next line of output; fails after `timeout` rather than hanging."""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), f"no output within {timeout}s"
    return process.stdout.readline().strip()


def ip_show(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def ours_everywhere() -> str:
    """Every namespace and link on this machine, as text to search for a tag."""
    return ip_show("netns", "list") + ip_show("link", "show")


def require_namespaces(network: Network) -> None:
    """Namespaces or nothing: fails under CI, skips elsewhere."""
    if not network.isolated:
        if os.environ.get("CI"):
            pytest.fail(f"network namespaces are required under CI: {network.fallback_reason}")
        pytest.skip(f"no network namespaces here: {network.fallback_reason}")


def test_three_hosts_come_up_each_with_an_address_of_its_own(hosts: Network):
    assert [host.name for host in hosts.hosts] == ["a", "b", "c"]
    addresses = [host.address for host in hosts.hosts]
    assert len(set(addresses)) == 3
    assert hosts.address not in addresses
    if hosts.isolated:
        for host in hosts.hosts:
            shown = host.run(["ip", "-o", "-4", "addr", "show"], check=True).stdout
            inet = [line.split()[3] for line in shown.splitlines()]
            assert inet == ["127.0.0.1/8", f"{host.address}/24"]


def test_a_host_cannot_take_another_hosts_address(hosts: Network):
    require_namespaces(hosts)
    a, b, _ = hosts.hosts
    refused = a.run(
        [sys.executable, "-c", f"import socket; socket.create_server(({b.address!r}, 0))"]
    )
    assert refused.returncode != 0
    assert "Cannot assign requested address" in refused.stderr


def test_a_server_in_host_a_is_reached_from_host_b_at_as_address(hosts: Network):
    a, b, _ = hosts.hosts
    server = a.popen([sys.executable, "-c", SERVER, a.address], stdout=subprocess.PIPE, text=True)
    port = read_line(server)
    client = b.run([sys.executable, "-c", CLIENT, a.address, port], check=True)
    if hosts.isolated:
        assert client.stdout.strip() == b.address  # from B's own network stack
    assert server.wait(10) == 0


def test_redis_on_the_network_answers_from_every_host(hosts: Network, hosts_redis: RedisServer):
    assert hosts_redis.host == hosts.address
    for host in hosts.hosts:
        cli = ["redis-cli", "-h", hosts.address, "-p", str(hosts_redis.port)]
        assert host.run([*cli, "PING"]).stdout.strip() == "PONG"
        seen_from = host.run([*cli, "CLIENT", "INFO"], check=True).stdout
        if hosts.isolated:
            assert f" addr={host.address}:" in f" {seen_from}"


def test_the_shared_redis_on_loopback_is_out_of_a_hosts_reach(hosts: Network):
    require_namespaces(hosts)
    ping = hosts.hosts[0].run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "PING"])
    assert "PONG" not in ping.stdout


def test_a_process_killed_with_sigkill_in_a_host_is_gone(hosts: Network):
    host = hosts.hosts[1]
    process = host.popen(["sleep", "60"])
    comm = Path(f"/proc/{process.pid}/comm")
    deadline = time.monotonic() + 5
    while comm.read_text().strip() != "sleep":  # ip execs the command: the pid is its own
        assert time.monotonic() < deadline, comm.read_text()
        time.sleep(0.01)
    if hosts.isolated:
        assert ip_show("netns", "pids", host.namespace).split() == [str(process.pid)]
    process.kill()
    assert process.wait(5) == -signal.SIGKILL
    assert not comm.exists()
    if hosts.isolated:
        assert ip_show("netns", "pids", host.namespace).split() == []


@pytest.mark.parametrize("hosts", [5], indirect=True)
def test_a_test_can_ask_for_more_hosts(hosts: Network):
    assert [host.name for host in hosts.hosts] == ["a", "b", "c", "d", "e"]
    assert len({host.address for host in hosts.hosts}) == 5


def test_nothing_of_ours_is_left_after_the_network_goes_down():
    with Network(3) as network:
        require_namespaces(network)
        started = network.hosts[0].popen(["sleep", "60"])
        names = network.names()
        assert len(names) == 7  # three namespaces, three veths, a bridge
    assert network.names() == []
    assert f"{network.tag}-" not in ours_everywhere()
    assert started.poll() == -signal.SIGKILL


def test_the_network_goes_down_when_the_test_fails_inside_it():
    with pytest.raises(RuntimeError, match="the test failed"):
        with Network(2) as network:
            started = network.hosts[1].popen(["sleep", "60"])
            raise RuntimeError("the test failed")
    assert network.names() == []
    assert started.poll() == -signal.SIGKILL


def test_a_process_left_running_in_a_host_dies_with_the_network():
    """A process the test did not start itself (a daemon's child) is found in the namespace."""
    with Network(1) as network:
        require_namespaces(network)
        shell = ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"]
        detached = int(network.hosts[0].run(shell, check=True).stdout)
        assert Path(f"/proc/{detached}").exists()
    assert network.names() == []
    assert gone_or_zombie(detached)


def test_what_a_run_that_died_left_is_swept_when_a_network_comes_up():
    dead = subprocess.Popen(["true"])
    dead.wait()
    tag = network_tag(dead.pid, 0)
    with Network(1) as probe:
        require_namespaces(probe)
    # A run killed between its `up` and its teardown leaves a bridge and a namespace; made
    # where no other network (of a parallel worker) can sweep it before the one below.
    with sweeping():
        subprocess.run(["ip", "link", "add", f"{tag}-br", "type", "bridge"], check=True)
        subprocess.run(["ip", "netns", "add", f"{tag}-a"], check=True)
        assert f"{tag}-" in ours_everywhere()
    with Network(1):
        assert f"{tag}-" not in ours_everywhere()


def test_a_network_of_another_live_run_is_never_swept():
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        tag, isolated, address = read_line(other, timeout=30).split()
        with Network(1) as network:
            require_namespaces(network)
            assert isolated == "True"
            assert f"{tag}-br" in ours_everywhere()
            assert network.address != address  # a /24 each
    finally:
        other.communicate("\n", timeout=30)
    assert f"{tag}-" not in ours_everywhere()


def test_hosts_are_loopback_addresses_when_namespaces_are_not_asked_for():
    with Network(3, namespaces=False) as network:
        assert not network.isolated
        assert network.address == "127.0.1.1"
        assert [host.address for host in network.hosts] == [
            "127.0.1.11",
            "127.0.1.12",
            "127.0.1.13",
        ]
        assert [host.namespace for host in network.hosts] == [None, None, None]
        a, b, _ = network.hosts
        server = a.popen(
            [sys.executable, "-c", SERVER, a.address], stdout=subprocess.PIPE, text=True
        )
        port = read_line(server)
        b.run([sys.executable, "-c", CLIENT, a.address, port], check=True)
        assert server.wait(10) == 0
        started = b.popen(["sleep", "60"])
    assert started.poll() == -signal.SIGKILL


def test_hosts_can_be_brought_up_and_down_by_hand():
    def hosts_module(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tests.hosts", *args]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)

    with Network(1) as probe:
        require_namespaces(probe)
    try:
        up = hosts_module("up", "--count", "2")
        assert up.returncode == 0, up.stderr
        lines = [line.split() for line in up.stdout.splitlines()]
        assert [line[:2] for line in lines] == [
            ["bridge", f"{MANUAL_TAG}-br"],
            ["host", "a"],
            ["host", "b"],
        ]
        shown = hosts_module("exec", "b", "ip", "-o", "-4", "addr", "show", "dev", "eth0")
        assert f"inet {lines[2][2]}/24" in shown.stdout, shown.stderr
        with Network(1):  # its sweep leaves a network made by hand alone
            assert f"{MANUAL_TAG}-br" in ours_everywhere()
    finally:
        assert hosts_module("down").returncode == 0
    assert f"{MANUAL_TAG}-" not in ours_everywhere()
