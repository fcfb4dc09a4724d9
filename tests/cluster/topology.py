"""Several devprov nodes on one machine, as separate hosts: a network namespace each, on a bridge,
behind HAProxy, on one PostgreSQL.

Each node has an address of its own (127.1.0.11, .12, ... on veth pairs to a bridge at
127.1.0.1, with `route_localnet` so loopback-range addresses route there and nothing can leave
the machine) and runs `devprov serve` there with a data dir of its own. HAProxy (TCP mode, config
from deploy/haproxy.cfg.in) listens on 127.0.0.1:443, :8883 and :5671 (the SDKs' fixed ports) in
the namespace that runs this, and checks each node's /readyz over TLS. PostgreSQL is reached over
its unix socket, which every namespace sees (it is a file).

Run it inside a private network and mount namespace: scripts/run-tests does (the tests in
tests/cluster use `Cluster` directly), and `scripts/cluster up|down|status` makes one for a person.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BRIDGE, BRIDGE_ADDRESS = "dpbr0", "127.1.0.1"
HTTPS_PORT, MQTT_PORT, AMQP_PORT = 443, 8883, 5671
# Each node listens on the standard ports at its own address, as on a host of its own (so what
# `devprov info` tells of a node, localhost:443, is the balancer's address in this namespace).
NODE_HTTPS_PORT, NODE_MQTT_PORT, NODE_AMQP_PORT = 443, 8883, 5671
STARTUP_SECONDS = 180  # a loaded two-core machine starting several Pythons at once


def run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.decode().strip()}")


def sysctl_localnet(interface: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    for name in ("all", interface):
        run(*prefix, "sysctl", "-qw", f"net.ipv4.conf.{name}.route_localnet=1")


def listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def private_netns_dir() -> None:
    """`ip netns` keeps its namespaces under /run/netns: a tmpfs of this mount namespace's own,
    so nothing of the cluster shows (or stays) outside it."""
    Path("/run/netns").mkdir(parents=True, exist_ok=True)
    run("mount", "-t", "tmpfs", "devprov-netns", "/run/netns")


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

    @property
    def https(self) -> str:
        return f"{self.address}:{NODE_HTTPS_PORT}"


@dataclass
class Cluster:
    """The nodes, the balancer, and how to start, kill and stop them."""

    database: str
    workdir: Path
    nodes: list[Node] = field(default_factory=list)
    balancer: subprocess.Popen[bytes] | None = None
    python: str = sys.executable
    environment: dict[str, str] = field(default_factory=dict)
    """DEVPROV_* settings every node starts with (e.g. a short operation deadline)."""

    def sealing_key(self) -> str:
        """The one sealing key every node of the deployment is given (kept in the workdir, so
        a node added later by another `scripts/cluster` call gets it too)."""
        kept = self.workdir / "sealing.key"
        if not kept.exists():
            kept.write_text(base64.b64encode(os.urandom(32)).decode())
            kept.chmod(0o600)
        return kept.read_text().strip()

    @property
    def ca(self) -> Path:
        """The deployment's CA: every node's server certificate chains to it."""
        return self.nodes[0].data_dir / "tls" / "ca.pem"

    @property
    def stats_socket(self) -> Path:
        return self.workdir / "haproxy.sock"

    def network(self, count: int) -> None:
        """The bridge and one namespace per node, each with its own address."""
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        sysctl_localnet(BRIDGE)
        for _ in range(count):
            self.add_node()

    def add_node(self) -> Node:
        """One more namespace on the bridge (its devprov is started by `start`)."""
        number = len(self.nodes) + 1
        node = Node(number, self.workdir / f"node{number}")
        outside, inside = f"dpv{number}", f"dpv{number}n"
        run("ip", "netns", "add", node.namespace)
        run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        run("ip", "link", "set", inside, "netns", node.namespace)
        run("ip", "link", "set", outside, "master", BRIDGE)
        run("ip", "link", "set", outside, "up")
        sysctl_localnet(outside)
        inner = ("ip", "netns", "exec", node.namespace)
        run(*inner, "ip", "link", "set", "lo", "up")
        run(*inner, "ip", "link", "set", inside, "up")
        run(*inner, "ip", "addr", "add", f"{node.address}/24", "dev", inside)
        run(*inner, "ip", "route", "add", "default", "via", BRIDGE_ADDRESS)
        sysctl_localnet(inside, node.namespace)
        self.nodes.append(node)
        return node

    def launch(self, node: Node, *flags: str) -> None:
        """`devprov serve` in the node's namespace, on its own address (not waited for)."""
        log = open(self.workdir / f"node{node.number}.log", "ab")  # noqa: SIM115 - the process keeps it
        environment = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "DEVPROV_SECRET_KEY": self.sealing_key(),
            **self.environment,
        }
        node.process = subprocess.Popen(
            [
                "ip", "netns", "exec", node.namespace, self.python, "-m", "devprov.cli",
                "serve", "--data-dir", str(node.data_dir), "--host", node.address,
                "--https-port", str(NODE_HTTPS_PORT), "--mqtt-port", str(NODE_MQTT_PORT),
                "--amqp-port", str(NODE_AMQP_PORT), "--db", self.database,
                "--name", "localhost", "--name", node.address, "--no-console", *flags,
            ],
            stdout=log, stderr=log, cwd=ROOT, env=environment,
        )  # fmt: skip

    def wait_listening(self, *nodes: Node) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        for node in nodes:
            while not listening(node.address, NODE_HTTPS_PORT):
                if node.process is not None and node.process.poll() is not None:
                    raise RuntimeError(f"node{node.number} exited: see {self.log_of(node)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"node{node.number} did not listen: see {self.log_of(node)}")
                time.sleep(0.2)

    def start(self, *nodes: Node) -> None:
        """Start these nodes together and wait until each listens."""
        for node in nodes or tuple(self.nodes):
            self.launch(node)
        self.wait_listening(*(nodes or tuple(self.nodes)))

    def log_of(self, node: Node) -> Path:
        return self.workdir / f"node{node.number}.log"

    def stop(self, node: Node, how: int = signal.SIGKILL) -> int:
        """Stop a node with `how`; answers its exit status (its namespace stays)."""
        assert node.process is not None
        node.process.send_signal(how)
        status = node.process.wait(timeout=STARTUP_SECONDS)
        node.process = None
        return status

    def haproxy_config(self) -> str:
        """deploy/haproxy.cfg.in filled in: each node's HTTPS checked with GET /readyz (its
        certificate verified against the deployment's CA), its MQTT and AMQP servers tracking
        that check, so a draining node leaves every port of the balancer at once."""
        template = (ROOT / "deploy" / "haproxy.cfg.in").read_text()

        def servers(port: int, check: str) -> str:
            return "\n".join(
                f"    server node{n.number} {n.address}:{port} "
                + check.format(name=f"node{n.number}")
                for n in self.nodes
            )

        tracking = "track devprov_https/{name}"
        return (
            template.replace("@LISTEN@", "127.0.0.1")
            .replace("@STATS_SOCKET@", str(self.stats_socket))
            .replace("@CA_FILE@", str(self.ca))
            .replace("@NODES_HTTPS@", servers(NODE_HTTPS_PORT, "check"))
            .replace("@NODES_MQTT@", servers(NODE_MQTT_PORT, tracking))
            .replace("@NODES_AMQP@", servers(NODE_AMQP_PORT, tracking))
        )

    def balance(self) -> None:
        """(Re)start HAProxy over the nodes there are now, and wait until it routes to all."""
        config = self.workdir / "haproxy.cfg"
        config.write_text(self.haproxy_config())
        run("haproxy", "-c", "-q", "-f", str(config))
        old = self.balancer  # reloaded as HAProxy does: the old one finishes its connections
        finishing = ["-sf", str(old.pid)] if old is not None else []
        log = open(self.workdir / "haproxy.log", "ab")  # noqa: SIM115 - the process keeps it
        self.balancer = subprocess.Popen(
            ["haproxy", "-f", str(config), "-db", *finishing], stdout=log, stderr=log
        )
        self.wait_up(len([n for n in self.nodes if n.process is not None]))
        if old is not None:
            old.wait(timeout=STARTUP_SECONDS)

    def servers_up(self) -> dict[str, str]:
        """What HAProxy says of each node's HTTPS server (UP, DOWN, ...), from its stats socket."""
        with socket.socket(socket.AF_UNIX) as stats:
            stats.connect(str(self.stats_socket))
            stats.sendall(b"show stat\n")
            data = b""
            while chunk := stats.recv(65536):
                data += chunk
        rows = [line.split(",") for line in data.decode().splitlines() if line and line[0] != "#"]
        return {
            row[1]: row[17] for row in rows if row[0] == "devprov_https" and row[1] != "BACKEND"
        }

    def wait_up(self, count: int) -> None:
        """Until HAProxy counts `count` nodes up (its checks run every second)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                up = [name for name, state in self.servers_up().items() if state == "UP"]
            except OSError:
                up = []
            if len(up) == count:
                return
            if self.balancer is not None and self.balancer.poll() is not None:
                raise RuntimeError(f"HAProxy exited: see {self.workdir / 'haproxy.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"HAProxy sees {up} up, not {count} nodes")
            time.sleep(0.2)

    def ready(self, node: Node) -> int:
        """The status of the node's /readyz, asked directly (0: it does not answer)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        try:
            with urllib.request.urlopen(
                f"https://{node.https}/readyz", context=context, timeout=5
            ) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return 0

    def describe(self) -> dict[str, object]:
        return {
            "balancer": {"https": HTTPS_PORT, "mqtt": MQTT_PORT, "amqp": AMQP_PORT},
            "ca": str(self.ca),
            "database": self.database,
            "nodes": [
                {"node": n.number, "address": n.address, "dataDir": str(n.data_dir)}
                for n in self.nodes
            ],
        }

    def down(self) -> None:
        for node in self.nodes:
            if node.process is not None:
                node.process.kill()
                node.process.wait()
                node.process = None
            subprocess.run(["ip", "netns", "del", node.namespace], check=False, capture_output=True)
        if self.balancer is not None:
            self.balancer.terminate()
            self.balancer.wait()
            self.balancer = None
        subprocess.run(["ip", "link", "del", BRIDGE], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="A devprov cluster on this machine.")
    parser.add_argument("action", choices=["up", "status"])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--db", default="")
    parser.add_argument("--workdir", type=Path, required=True)
    options = parser.parse_args()
    workdir: Path = options.workdir
    if options.action == "status":
        described = json.loads((workdir / "cluster.json").read_text())
        cluster = Cluster(described["database"], workdir)
        for entry in described["nodes"]:
            cluster.nodes.append(Node(entry["node"], Path(entry["dataDir"])))
        servers = cluster.servers_up()
        for node in cluster.nodes:
            print(
                f"node{node.number} {node.address}: readyz {cluster.ready(node) or 'no answer'},"
                f" haproxy {servers.get(f'node{node.number}', '?')}"
            )
        return
    if not options.db:
        parser.error("up needs --db postgresql://...")
    workdir.mkdir(parents=True, exist_ok=True)
    private_netns_dir()
    cluster = Cluster(options.db, workdir)
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stop.append(signum))
    try:
        cluster.network(options.nodes)
        cluster.start()
        cluster.balance()
        (workdir / "cluster.json").write_text(json.dumps(cluster.describe(), indent=2) + "\n")
        print(f"{options.nodes} nodes behind 127.0.0.1:443, :8883 and :5671; logs in {workdir}")
        while not stop:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.down()
        (workdir / "cluster.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
