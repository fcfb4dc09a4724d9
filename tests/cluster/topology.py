"""Several devprov nodes on one machine, as separate hosts: a network namespace each, on a bridge,
behind HAProxy, on one PostgreSQL.

Each node has an address of its own (127.1.0.11, .12, ... on veth pairs to a bridge at
127.1.0.1, with `route_localnet` so loopback-range addresses route there and nothing can leave
the machine) and runs `devprov serve` there with a data dir of its own. HAProxy listens on
127.0.0.1:443 and :8883 (the SDKs' fixed ports) in the namespace that runs this. PostgreSQL is
reached over its unix socket, which every namespace sees.

Run it inside a private network and mount namespace (scripts/run-tests does; `scripts/cluster`
makes one for a person). `python -m tests.cluster.topology up --nodes 3 --db URL` brings a
cluster up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BRIDGE, BRIDGE_ADDRESS = "dpbr0", "127.1.0.1"
HTTPS_PORT, MQTT_PORT = 443, 8883
NODE_HTTPS_PORT, NODE_MQTT_PORT = 8443, 8884


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


def sysctl_localnet(interface: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    for name in ("all", interface):
        run(*prefix, "sysctl", "-qw", f"net.ipv4.conf.{name}.route_localnet=1")


def wait_for(address: str, port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.3):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {address}:{port}")


@dataclass
class Node:
    number: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def namespace(self) -> str:
        return f"dpnode{self.number}"

    @property
    def address(self) -> str:
        return f"127.1.0.{10 + self.number}"


@dataclass
class Cluster:
    """The nodes, the balancer, and how to start, kill and stop them."""

    database: str
    workdir: Path
    nodes: list[Node] = field(default_factory=list)
    balancer: subprocess.Popen[bytes] | None = None
    python: str = sys.executable

    def network(self, count: int) -> None:
        """The bridge and one namespace per node, each with its own address."""
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        sysctl_localnet(BRIDGE)
        for number in range(1, count + 1):
            node = Node(number, self.workdir / f"node{number}")
            outside, inside = f"dpv{number}", f"dpv{number}n"
            run("ip", "netns", "add", node.namespace)
            run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            run("ip", "link", "set", inside, "netns", node.namespace)
            run("ip", "link", "set", outside, "master", BRIDGE)
            run("ip", "link", "set", outside, "up")
            exec_ = ("ip", "netns", "exec", node.namespace)
            run(*exec_, "ip", "link", "set", "lo", "up")
            run(*exec_, "ip", "link", "set", inside, "up")
            run(*exec_, "ip", "addr", "add", f"{node.address}/24", "dev", inside)
            run(*exec_, "ip", "route", "add", "default", "via", BRIDGE_ADDRESS)
            sysctl_localnet(inside, node.namespace)
            self.nodes.append(node)

    def start(self, node: Node, *flags: str) -> None:
        """`devprov serve` on the node's own address (and every other option from `flags`)."""
        log = open(self.workdir / f"node{node.number}.log", "ab")  # noqa: SIM115 - kept open for the process
        node.process = subprocess.Popen(
            [
                "ip", "netns", "exec", node.namespace, self.python, "-m", "devprov.cli",
                "serve", "--data-dir", str(node.data_dir), "--host", node.address,
                "--https-port", str(NODE_HTTPS_PORT), "--mqtt-port", str(NODE_MQTT_PORT),
                "--db", self.database, "--name", "localhost", *flags,
            ],
            stdout=log, stderr=log, cwd=ROOT,
        )  # fmt: skip
        wait_for(node.address, NODE_HTTPS_PORT)

    def kill(self, node: Node, how: int = signal.SIGKILL) -> int:
        """Stop a node with `how`; answers its exit status."""
        assert node.process is not None
        node.process.send_signal(how)
        status = node.process.wait(timeout=60)
        node.process = None
        return status

    def balance(self) -> None:
        """HAProxy on 127.0.0.1:443 and :8883, checking each node's /readyz."""
        template = (ROOT / "deploy" / "haproxy.cfg.in").read_text()
        https = "\n".join(
            f"    server node{n.number} {n.address}:{NODE_HTTPS_PORT} check check-ssl verify none"
            " inter 1s fall 2 rise 1"
            for n in self.nodes
        )
        mqtt = "\n".join(
            f"    server node{n.number} {n.address}:{NODE_MQTT_PORT} check inter 1s fall 2 rise 1"
            for n in self.nodes
        )
        config = self.workdir / "haproxy.cfg"
        config.write_text(
            template.replace("@LISTEN@", "127.0.0.1")
            .replace("@NODES_HTTPS@", https)
            .replace("@NODES_MQTT@", mqtt)
        )
        self.balancer = subprocess.Popen(["haproxy", "-f", str(config), "-db"])
        wait_for("127.0.0.1", HTTPS_PORT)

    def down(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                node.process.kill()
                node.process.wait()
            subprocess.run(["ip", "netns", "del", node.namespace], check=False)
        if self.balancer is not None:
            self.balancer.terminate()
            self.balancer.wait()
        subprocess.run(["ip", "link", "del", BRIDGE], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="A devprov cluster on this machine.")
    parser.add_argument("action", choices=["up"])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--db", required=True)
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="devprov-cluster-"))
    cluster = Cluster(options.db, workdir)
    try:
        cluster.network(options.nodes)
        for node in cluster.nodes:
            cluster.start(node)
        cluster.balance()
        print(f"{options.nodes} nodes behind 127.0.0.1:443 and :8883; logs in {workdir}")
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.down()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
