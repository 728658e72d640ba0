"""Separate hosts on one machine: Linux network namespaces joined by a bridge (needs root).

Used by the partition scenario (testkit/partition.py) that the benchmark's network stage
(bench/network.py) and its integration test (tests/integration/test_network_partition.py) run.

`HostNetwork` makes a bridge in the root namespace (the enqueuing host, 10.231.7.1) and,
for each host, a namespace with a veth link whose peer is a port of that bridge (10.231.7.10,
.11, ...). Every host reaches every other through the bridge. `partition(host)` sets the
host's bridge port down: its side of the link loses carrier and packets are dropped without
an error (a silent partition: TCP retransmits, nothing is reset); `heal(host)` sets it up.

Only addresses of this private /24 and loopback are used. `close()` kills every process
started here, then deletes the namespaces (which deletes their veth pairs) and the bridge.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from testkit.services import PostgresServer, postgres_bin_dir

SUBNET = "10.231.7"
PREFIX = 24
# a vanished host's connection (and its row locks) dropped in seconds: see start_postgres
VANISHED_HOST_SETTINGS = (
    "tcp_keepalives_idle=2", "tcp_keepalives_interval=1", "tcp_keepalives_count=3",
    "tcp_user_timeout=5000",
)  # fmt: skip


def ip(*args: str, namespace: str | None = None, check: bool = True) -> None:
    command = ["ip", *args] if namespace is None else ["ip", "-n", namespace, *args]
    subprocess.run(command, check=check, capture_output=True, text=True, timeout=20)


def namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be made here (None when they can)."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"triage-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip() or made.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    port: str  # the bridge-side veth, in the root namespace

    def command(self, *args: str) -> list[str]:
        """`args` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *args]


@dataclass
class HostNetwork:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    hosts: dict[str, Host] = field(default_factory=dict)
    processes: list[subprocess.Popen] = field(default_factory=list)
    postgres_servers: list[PostgresServer] = field(default_factory=list)
    bridge: str = ""
    gateway_address: str = f"{SUBNET}.1"

    def __post_init__(self) -> None:
        self.bridge = f"tbr{self.tag}"

    def open(self) -> HostNetwork:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway_address}/{PREFIX}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        return self

    def add_host(self, name: str) -> Host:
        index = len(self.hosts)
        namespace = f"triage-{self.tag}-{name}"
        port, inside = f"tp{self.tag}{index}", f"tn{self.tag}{index}"
        host = Host(name, namespace, f"{SUBNET}.{10 + index}", port)
        ip("netns", "add", namespace)
        self.hosts[name] = host
        ip("link", "add", port, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", namespace)
        ip("link", "set", port, "master", self.bridge)
        ip("link", "set", port, "up")
        ip("link", "set", "lo", "up", namespace=namespace)
        ip("link", "set", inside, "name", "eth0", namespace=namespace)
        ip("addr", "add", f"{host.address}/{PREFIX}", "dev", "eth0", namespace=namespace)
        ip("link", "set", "eth0", "up", namespace=namespace)
        return host

    def partition(self, host: Host) -> None:
        ip("link", "set", host.port, "down")

    def heal(self, host: Host) -> None:
        ip("link", "set", host.port, "up")

    def spawn(self, host: Host, args: Sequence[str], log: Path) -> subprocess.Popen:
        with log.open("w") as out:
            process = subprocess.Popen(
                host.command(*args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def start_redis(self, host: Host, directory: Path, port: int = 6379) -> str:
        """redis-server bound to the host's address only, with a password (Redis refuses
        other hosts without one: protected mode); returns its URL (database 0)."""
        from testkit.services import redis_server_binary

        directory.mkdir(parents=True, exist_ok=True)
        password = uuid.uuid4().hex
        self.spawn(
            host,
            [
                redis_server_binary(), "--port", str(port), "--bind", host.address,
                "--dir", str(directory), "--save", "", "--appendonly", "no",
                "--maxmemory-policy", "noeviction", "--requirepass", password,
            ],
            directory / "redis.log",
        )  # fmt: skip
        return f"redis://:{password}@{host.address}:{port}/0"

    def start_postgres(self, host: Host, directory: Path, port: int = 5432) -> str:
        """A throwaway cluster (testkit.services.PostgresServer) started inside `host`,
        listening on its address only, open to this subnet; returns the admin URL.

        A worker host that vanishes in the middle of a transaction keeps its row locks (and
        blocks the reconciler and other workers) until the server drops its connection: short
        TCP keepalives (an idle connection) and `tcp_user_timeout` (data left unacknowledged)
        make that seconds, not the kernel's defaults of 2 hours and ~15 minutes."""
        if postgres_bin_dir() is None:
            raise RuntimeError("PostgreSQL binaries not found under /usr/lib/postgresql")
        server = PostgresServer(
            directory, port, host.address, host.command, VANISHED_HOST_SETTINGS,
            trusted_subnet=f"{SUBNET}.0/{PREFIX}",
        )  # fmt: skip
        self.postgres_servers.append(server)
        return server.start(fsync="off").url

    def close(self) -> None:
        """Kill what was started here, then remove the namespaces and the bridge."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        for server in self.postgres_servers:
            with contextlib.suppress(subprocess.CalledProcessError):
                server.stop(mode="immediate")
        for host in self.hosts.values():
            ip("netns", "del", host.namespace, check=False)
            ip("link", "del", host.port, check=False)  # gone with the namespace already
        ip("link", "del", self.bridge, check=False)
