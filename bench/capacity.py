"""A capacity model: per-scan costs of each component, measured here, projected to N hosts.

python -m bench.capacity --model-dir /tmp/realtrain/models   # reuse a published model root
python -m bench.capacity --repeats 3 --jobs 12 --batch 256    # without --model-dir: publishes one

Measured on this machine (medians of `--repeats` runs):
- the model: the served model's forward pass with TensorFlow limited to 1 thread, in a fresh
  process (`python -m bench.ceiling MODEL_DIR SCANS 1`) -> scans/s per core;
- the ledger on PostgreSQL (fsync=on, synchronous_commit=on): `bench.ledger_steps.run_backend`
  (enqueue + one job's claim, record, decide), timing the client and reading the CPU time of
  the cluster's processes (postmaster + children, /proc/<pid>/stat) before and after;
- the broker: jobs of `--batch` ids published by `gateway.broker.publish.publish_jobs`, consumed and
  acked with kombu as a worker does, reading redis-server's `INFO cpu` before and after.

Projection (`project`): a worker host with C cores classifies C / (1/model + worker overhead)
scans/s; PostgreSQL with S cores saturates at S / server CPU per scan; Redis (one thread) at
1 / Redis CPU per scan; N hosts give min(N x host, PostgreSQL, Redis).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

HOSTS = (1, 4, 16, 64)
MAX_CONNECTIONS = 100  # PostgreSQL's default
CLK_TCK = os.sysconf("SC_CLK_TCK")
TICK_US = 1e6 / CLK_TCK  # the kernel counts CPU time in clock ticks: smaller is unmeasured


def at_least_a_tick(total_cpu_us: float, units: int) -> tuple[float, bool]:
    """CPU µs per unit from a total over `units` units, raised to one clock tick over all of
    them when the counters moved less (a quick run can see no tick at all, and the projection
    divides by the cost); True where raised: the capacity from it is then a lower bound."""
    per_unit, floor = total_cpu_us / units, TICK_US / units
    return (per_unit, False) if per_unit >= floor else (floor, True)


def model_rate_per_core(model_dir: Path, scans: int, repeats: int) -> dict[str, Any]:
    """Median scans/s of the forward pass on one thread, each run in a fresh process."""
    from bench.ceiling import in_fresh_process

    rates = [in_fresh_process(model_dir, scans, threads=1) for _ in range(repeats)]
    return {
        "scans_per_s_per_core": statistics.median(rates),
        "runs": rates,
        "command": f"python -m bench.ceiling {model_dir} {scans} 1",
    }


def _admin(admin_url: str, *statements: str) -> list[Any]:
    """Run `statements` in autocommit on the admin connection; the first column of each."""
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            results = [connection.execute(sa.text(sql)) for sql in statements]
            return [result.scalar() if result.returns_rows else None for result in results]
    finally:
        engine.dispose()


def postmaster_pid(admin_url: str) -> int:
    """The server's postmaster, from postmaster.pid in its data directory."""
    (data_dir,) = _admin(admin_url, "SHOW data_directory")
    return int(Path(data_dir, "postmaster.pid").read_text().split()[0])


def postgres_cpu_s(postmaster: int) -> float:
    """CPU seconds of the cluster: the postmaster's live children, then the postmaster itself
    (its cutime/cstime hold every backend that has exited and been reaped). Children are read
    first: one reaped between the two reads is counted twice (a cost too high, a capacity too
    low) rather than missed (one run in three read a tenth of the cost that way)."""
    from testkit.workers import proc_stat

    def cpu_ticks(fields: list[str]) -> int:
        return sum(int(value) for value in fields[11:15])  # utime stime cutime cstime

    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == postmaster:
            continue
        try:
            fields = proc_stat(int(entry.name))
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            total += cpu_ticks(fields)
    return (total + cpu_ticks(proc_stat(postmaster))) / CLK_TCK


def ledger_costs(env: Any, jobs: int, batch: int, repeats: int) -> dict[str, Any]:  # noqa: ANN401
    """Per-scan costs of enqueue + a job's DB work on PostgreSQL: wall (client view), client
    CPU, and server CPU, medians over `repeats` runs of `bench.ledger_steps.run_backend`."""
    from bench.ledger_steps import run_backend
    from ledger.database import create_ledger_engine, upgrade_schema

    postmaster = postmaster_pid(env.postgres_admin_url)
    runs = []
    for _ in range(repeats):
        url = env.fresh_database("postgresql")
        engine = create_ledger_engine(url)
        upgrade_schema(engine)  # migrations are not part of the per-scan cost
        engine.dispose()
        scans = (jobs + 1) * batch  # run_backend's uncounted warm-up job still costs the server
        server, client = postgres_cpu_s(postmaster), time.process_time()
        timing = run_backend(url, jobs, batch)
        client = time.process_time() - client
        server = postgres_cpu_s(postmaster) - server
        server_us, below_resolution = at_least_a_tick(server * 1e6, scans)
        runs.append({
            "enqueue_wall_us": timing["enqueue"],
            "job_wall_us": timing["job"],
            "client_cpu_us": client * 1e6 / scans,
            "server_cpu_us": server_us,
            "server_cpu_below_resolution": below_resolution,
        })  # fmt: skip
    result = medians(runs)
    result["runs"] = runs
    return result


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric key's median over the runs; a flag key is true if it was in any run."""
    return {
        key: any(run[key] for run in runs)
        if isinstance(value, bool)
        else statistics.median(run[key] for run in runs)
        for key, value in runs[0].items()
    }


def redis_cpu_s(client: Any) -> float:  # noqa: ANN401 - redis.Redis
    """redis-server's own CPU seconds (user + system), from INFO cpu."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def consume(url: str, count: int) -> None:
    """Take `count` jobs off the routine queue and ack each, as a worker does (prefetch 1)."""
    from kombu import Consumer, Queue

    from gateway.broker.publish import producer_app
    from schemas.queues import ROUTINE_QUEUE

    taken: list[int] = []

    def on_message(body: Any, message: Any) -> None:  # noqa: ANN401
        message.ack()
        taken.append(len(body[0][0]["scan_ids"]))

    with producer_app(url).connection_for_read() as connection:
        queues = [Queue(ROUTINE_QUEUE)]
        with Consumer(connection, queues, callbacks=[on_message], accept=["json"]) as consumer:
            consumer.qos(prefetch_count=1)
            while len(taken) < count:
                connection.drain_events(timeout=10)


def broker_costs(
    env: Any,  # noqa: ANN401 - bench.environment.BenchEnvironment
    batch: int,
    messages: int,
    repeats: int,
) -> dict[str, Any]:
    """Redis CPU per job (publish + consume + ack of one job of `batch` ids), under the server
    settings `measure_in` applied (production: AOF on); Redis's idle CPU over the same time is
    subtracted."""
    import uuid

    import redis

    from gateway.broker.publish import publish_jobs

    client = redis.Redis.from_url(env.redis_url)
    idle = redis_cpu_s(client)
    time.sleep(2.0)
    idle_rate = (redis_cpu_s(client) - idle) / 2.0
    runs = []
    for _ in range(repeats):
        settings = env.settings(env.fresh_database("sqlite"), batch_size=batch)
        ids = [str(uuid.uuid4()) for _ in range(messages * batch)]
        started, before, client_cpu = time.perf_counter(), redis_cpu_s(client), time.process_time()
        publish_jobs(ids, "routine", settings)
        published, publish_client = redis_cpu_s(client), time.process_time()
        consume(str(settings.redis_url), messages)
        after, consume_client = redis_cpu_s(client), time.process_time()
        idle_s = idle_rate * (time.perf_counter() - started)
        per_job, below_resolution = at_least_a_tick((after - before - idle_s) * 1e6, messages)
        runs.append({
            "redis_cpu_us_per_job": per_job,
            "redis_cpu_below_resolution": below_resolution,
            "redis_publish_us_per_job": (published - before) * 1e6 / messages,
            "publish_client_cpu_us_per_job": (publish_client - client_cpu) * 1e6 / messages,
            "consume_client_cpu_us_per_job": (consume_client - publish_client) * 1e6 / messages,
        })  # fmt: skip
    result = medians(runs)
    result.update(idle_cpu_us_per_s=idle_rate * 1e6, messages=messages, batch=batch, runs=runs)
    return result


def project(
    costs: dict[str, float],
    hosts: tuple[int, ...] = HOSTS,
    cores_per_host: int = 8,
    db_cores: int = 8,
) -> list[dict[str, Any]]:
    """Throughput of N worker hosts sharing one PostgreSQL and one Redis, per N.

    `costs`: model_scans_per_s_per_core, worker_overhead_us_per_scan (the worker's own DB and
    broker time per scan, on top of the forward pass), pg_server_cpu_us_per_scan (enqueue + job)
    and redis_cpu_us_per_scan. Each row: the three capacities, the projected scans/s (their
    minimum), the bottleneck and the PostgreSQL connections held (one per worker process).
    """
    per_scan_s = (
        1 / costs["model_scans_per_s_per_core"] + costs["worker_overhead_us_per_scan"] / 1e6
    )
    host_rate = cores_per_host / per_scan_s
    postgres = db_cores * 1e6 / costs["pg_server_cpu_us_per_scan"]
    broker = 1e6 / costs["redis_cpu_us_per_scan"]
    rows = []
    for count in hosts:
        capacities = {"workers": count * host_rate, "postgresql": postgres, "redis": broker}
        bottleneck = min(capacities, key=capacities.__getitem__)
        connections = count * cores_per_host
        rows.append({
            "hosts": count,
            "cores_per_host": cores_per_host,
            "worker_capacity": capacities["workers"],
            "postgresql_capacity": postgres,
            "redis_capacity": broker,
            "scans_per_s": capacities[bottleneck],
            "bottleneck": bottleneck,
            "pg_connections": connections,
            "over_max_connections": connections > MAX_CONNECTIONS,
        })  # fmt: skip
    return rows


def costs_from(model: dict, ledger: dict, broker: dict) -> dict[str, float]:
    """The inputs of `project` from the measurements: the worker's overhead is a job's DB wall
    time (a prefork process blocked on PostgreSQL leaves its core idle) plus its broker client
    CPU; PostgreSQL's is the server CPU of enqueue + the job; Redis's is per job / batch."""
    batch = broker["batch"]
    return {
        "model_scans_per_s_per_core": model["scans_per_s_per_core"],
        "worker_overhead_us_per_scan": ledger["job_wall_us"]
        + broker["consume_client_cpu_us_per_job"] / batch,
        "pg_server_cpu_us_per_scan": ledger["server_cpu_us"],
        "redis_cpu_us_per_scan": broker["redis_cpu_us_per_job"] / batch,
    }


def measure_capacity(
    console: Any,  # noqa: ANN401 - rich Console
    model_dir: Path | None = None,
    **sizes: int,
) -> dict[str, Any]:
    """Start the servers (`bench.environment`), then `measure_in` them."""
    from bench.environment import open_environment

    with ExitStack() as stack:
        env = open_environment(stack, 1, console, model_dir)
        if env.postgres_admin_url is None:
            raise SystemExit("the capacity model needs PostgreSQL (apt-get install postgresql)")
        return measure_in(env, console, **sizes)


def measure_in(
    env: Any,  # noqa: ANN401 - bench.environment.BenchEnvironment
    console: Any,  # noqa: ANN401 - rich Console
    jobs: int = 12,
    batch: int = 256,
    repeats: int = 3,
    messages: int = 200,
    model_scans: int = 4096,
    cores_per_host: int = 8,
    db_cores: int = 8,
) -> dict[str, Any]:
    """Each component's cost on `env`'s servers, under production settings; the projection."""
    from bench.profiles import PRODUCTION, apply_profile
    from schemas.model_card import resolve_model_dir

    servers = apply_profile(PRODUCTION, env.postgres_admin_url, env.redis_url)
    served = resolve_model_dir(env.model_root)
    console.print(f"capacity: model per core ({served.name}) ...")
    model = model_rate_per_core(served, model_scans, repeats)
    console.print("capacity: ledger on PostgreSQL (fsync on) ...")
    ledger = ledger_costs(env, jobs, batch, repeats)
    console.print("capacity: broker, Redis CPU per job ...")
    broker = broker_costs(env, batch, messages, repeats)
    costs = costs_from(model, ledger, broker)
    return {
        "machine": {"cpus": os.cpu_count(), "servers": servers},
        "settings": {"jobs": jobs, "batch": batch, "repeats": repeats, "messages": messages},
        "model": model,
        "ledger_postgresql": ledger,
        "broker_redis": broker,
        "costs": costs,
        "arithmetic": {
            "host_scans_per_s": "C / (1 / model_scans_per_s_per_core + worker_overhead_us / 1e6)",
            "postgresql_scans_per_s": "S * 1e6 / pg_server_cpu_us_per_scan",
            "redis_scans_per_s": "1e6 / redis_cpu_us_per_scan (one thread)",
            "throughput": "min(N * host, postgresql, redis)",
        },
        "projection": project(costs, HOSTS, cores_per_host, db_cores),
        "projection_2_cores": project(costs, HOSTS, 2, db_cores),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The projection as a markdown table."""
    lines = [
        "| hosts | worker-side capacity | PostgreSQL capacity | Redis capacity "
        "| projected scans/s | bottleneck |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['hosts']} | {row['worker_capacity']:,.0f} | {row['postgresql_capacity']:,.0f} "
            f"| {row['redis_capacity']:,.0f} | {row['scans_per_s']:,.0f} | {row['bottleneck']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`python -m bench.capacity`: measure, print the tables, write the JSON."""
    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="a published model root")
    parser.add_argument("--jobs", type=int, default=12, help="jobs per ledger run (12)")
    parser.add_argument("--batch", type=int, default=256, help="scans per job (256)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per component (3)")
    parser.add_argument("--messages", type=int, default=200, help="broker jobs per run (200)")
    parser.add_argument("--model-scans", type=int, default=4096, help="scans per model run")
    parser.add_argument("--cores-per-host", type=int, default=8)
    parser.add_argument("--db-cores", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    options = parser.parse_args(argv)
    console = Console()
    results = measure_capacity(
        console, options.model_dir, jobs=options.jobs, batch=options.batch,
        repeats=options.repeats, messages=options.messages, model_scans=options.model_scans,
        cores_per_host=options.cores_per_host, db_cores=options.db_cores,
    )  # fmt: skip
    console.print_json(json.dumps({k: v for k, v in results.items() if "projection" not in k}))
    for key in ("projection", "projection_2_cores"):
        print(f"\n{key}:\n{table(results[key])}")
    if options.out:
        options.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
