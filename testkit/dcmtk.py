"""dcmtk's tools as real DICOM peers: `echoscu` and `storescu` as senders, `storescp` as a PACS.

Called by their names on PATH (Debian's dcmtk; pynetdicom's console scripts of the same names
take other flags, so a venv must not shadow them). Every tool runs with TCP_NODELAY=1: dcmtk
leaves Nagle's algorithm on otherwise, and each instance then waits out a 40 ms delayed ACK.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from testkit.services import wait_until

LOOPBACK = "127.0.0.1"


def dcmtk_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with TCP_NODELAY=1."""
    return {**(os.environ if base is None else base), "TCP_NODELAY": "1"}


def run_dcmtk(*args: str, timeout: float = 120) -> int:
    """A dcmtk tool's exit status."""
    return subprocess.run(args, capture_output=True, timeout=timeout, env=dcmtk_env()).returncode


def echo(port: int, calling: str = "SENDER", called: str = "TRIAGE") -> bool:
    """C-ECHO to `called` on a loopback port: True when it answers success."""
    return run_dcmtk("echoscu", "-aet", calling, "-aec", called, LOOPBACK, str(port)) == 0


def storescu(
    port: int,
    paths: Sequence[Path],
    *options: str,
    calling: str = "SENDER",
    called: str = "TRIAGE",
    timeout: float = 120,
) -> int:
    """C-STORE `paths` (files, or folders with `+sd`) on one association; the exit status."""
    return run_dcmtk(
        "storescu", *options, "-aet", calling, "-aec", called, LOOPBACK, str(port),
        *map(str, paths), timeout=timeout,
    )  # fmt: skip


def tls_options(key: Path, cert: Path, trusted: Path | None = None) -> list[str]:
    """dcmtk's TLS options: present `cert` (its unencrypted `key`) and, with `trusted` (a CA
    file), require and verify the peer's certificate; without it, ignore the peer's."""
    verify = ["+cf", str(trusted), "-rc"] if trusted is not None else ["-ic"]
    return ["+tls", str(key), str(cert), "-pw", *verify]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((LOOPBACK, port)) == 0


@contextlib.contextmanager
def storescp(
    folder: Path, port: int, ae_title: str = "PACS", options: Sequence[str] = ()
) -> Iterator[subprocess.Popen]:
    """storescp writing what it receives into `folder`, listening on `port` inside the block;
    `options` go before the rest (for TLS: `tls_options(...)`)."""
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        ["storescp", *options, "--output-directory", str(folder), "-aet", ae_title, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dcmtk_env(),
    )
    try:
        wait_until(lambda: process.poll() is None and listening(port), what="storescp")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)
