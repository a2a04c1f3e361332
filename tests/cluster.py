"""A Redis Cluster of the test run's own: three masters on free ports, no replicas, every slot
covered; a master can be stopped and started again on its port with its cluster config.

Sharded pub/sub with redis-py 7.4 (docs/scaling.md, "A Redis Cluster in the tests"): the
asyncio RedisCluster routes SPUBLISH to the master owning the channel's slot, but has no
pubsub(), and the asyncio PubSub has no ssubscribe(). Subscribing means a PubSub of the owning
node (`Cluster.node_for(channel)`) and the raw SSUBSCRIBE command; messages then come from
get_message() as type "smessage" (listen() stops at once: the PubSub does not count shard
channels as subscriptions), and nothing is subscribed again after a reconnection.
"""

import subprocess
import time
from pathlib import Path

import redis

from tests import processes
from tests.redis_server import RedisServer

REDIS_CLI = "redis-cli"
SLOTS = 16384


class Cluster:
    """`masters` Redis masters on `host`, the slots split evenly between them."""

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        *,
        masters: int = 3,
        node_timeout_ms: int = 2000,
    ) -> None:
        self.nodes = [
            RedisServer(
                directory / f"node{index}",
                host,
                args=[
                    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                    *("--cluster-port", str(processes.free_port(host))),
                    *("--cluster-node-timeout", str(node_timeout_ms)),
                ],
            )
            for index in range(masters)
        ]

    @property
    def url(self) -> str:
        """The seed URLs, comma-separated, as a setting lists them."""
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 60.0) -> None:
        """Start every node, join them (`redis-cli --cluster create`), wait until all are ok."""
        for node in self.nodes:
            node.start()
        addresses = [f"{node.host}:{node.port}" for node in self.nodes]
        created = subprocess.run(
            [REDIS_CLI, "--cluster", "create", *addresses]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if created.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}"
            )
        self.wait_ok(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def info(self, node: RedisServer) -> dict[str, str]:
        """CLUSTER INFO of one node."""
        with node.client(socket_timeout=2, decode_responses=True) as client:
            return client.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py

    def healthy(self) -> bool:
        """Every node runs, knows every other, and says cluster_state:ok with every slot."""
        expected = {
            "cluster_state": "ok",
            "cluster_slots_ok": str(SLOTS),
            "cluster_known_nodes": str(len(self.nodes)),
        }
        try:
            return all(
                node.running and expected.items() <= self.info(node).items() for node in self.nodes
            )
        except redis.RedisError:
            return False

    def wait_ok(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                states = {node.port: self._state(node) for node in self.nodes}
                raise RuntimeError(f"the cluster is not ok within {timeout}s: {states}")
            time.sleep(0.1)

    def _state(self, node: RedisServer) -> str:
        try:
            return self.info(node).get("cluster_state", "?")
        except redis.RedisError as exc:
            return f"unreachable ({exc})"

    def restart(self, node: RedisServer) -> None:
        """Stop one master (SIGTERM) and start it again on its port and config; wait until
        the cluster is ok again. Its keys are gone (nothing is saved), its slots are not."""
        node.stop()
        node.start()
        self.wait_ok()

    def heal(self) -> None:
        """Start every node a test left stopped or killed; wait until the cluster is ok."""
        for node in self.nodes:
            if not node.running:
                node.start()
        self.wait_ok()

    def flush(self) -> None:
        """Empty every master."""
        for node in self.nodes:
            with node.client() as client:
                client.flushall()

    def slot(self, key: str | bytes) -> int:
        """The key's hash slot, as the cluster computes it (CLUSTER KEYSLOT)."""
        with self._live_node().client() as client:
            return int(client.execute_command("CLUSTER KEYSLOT", key))

    def node_for(self, key: str | bytes) -> RedisServer:
        """The master serving `key` (or a shard channel of that name) now (CLUSTER SLOTS)."""
        slot = self.slot(key)
        with self._live_node().client() as client:
            ranges = client.execute_command("CLUSTER SLOTS")
        for first, last, (_, port, *_), *_ in ranges:
            if first <= slot <= last:
                return next(node for node in self.nodes if node.port == port)
        raise LookupError(f"no node serves slot {slot}")

    def _live_node(self) -> RedisServer:
        return next(node for node in self.nodes if node.running)
