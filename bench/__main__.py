"""`python -m bench` (`make bench`): every stage, one table, bench/results.json.

Two columns: production settings (PostgreSQL fsync and synchronous_commit on, Redis AOF with
appendfsync everysec: bench/profiles.py) hold the top-level keys; fast settings (fsync off, no
AOF) go under `fast_settings`. Each column serves two models: the default published recipe and
baseline_2conv (`*_baseline_*` keys). Then the network stage (`network`: bench/network.py) and
the capacity model (`capacity`: bench/capacity.py), and the web stage (`web`: pages and API on
a ledger of 100,000 studies, 5,000 open urgent, 50 live streams, workers running: bench/web.py).

python -m bench                 # the full run: 10,000 scans, about 20 minutes on 2 cores
python -m bench --quick         # a few hundred scans, for a smoke check
python -m bench --scans 2000 --naive-scans 200 --model-dir ~/.triage/models
python -m bench --receive-only  # just the DICOM receive stage (`receive` in results.json)
python -m bench --web-only      # just the web stage (`web` in results.json: bench/web.py)
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console

from bench import report
from bench.ceiling import in_fresh_process
from bench.latency import percentiles, run_latency
from bench.naive import run_naive
from bench.pipeline import ROUTINE_CONCURRENCY, run_pipeline
from bench.profiles import FAST, PRODUCTION, ServerProfile, apply_profile
from bench.receive import INSTANCES, run_receive, run_study_latency

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"
BACKENDS = ("sqlite", "postgresql")
FULL = (10_000, 500, 10_240, 1_500)  # pipeline and backlog, naive peer, ceiling, network
QUICK = (300, 20, 1_024, 300)
LATE_STAGES = ("network", "capacity", "web")  # guarded: a failure is reported, the rest kept
CAPACITY_QUICK = {"jobs": 4, "repeats": 1, "messages": 50, "model_scans": 1024}
WEB_FULL = (100_000, 5_000, 200)  # studies, open urgent, requests a measurement
WEB_QUICK = (2_000, 200, 20)
SIZES = ("scans", "naive_scans", "ceiling_scans", "network_scans")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, help="pipeline scans and backlog (10,000)")
    parser.add_argument("--naive-scans", type=int, help="scans for the naive peer (500)")
    parser.add_argument("--ceiling-scans", type=int, help="scans for the ceiling (10,240)")
    parser.add_argument("--network-scans", type=int, help="scans for the network stage (1,500)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: TRIAGE_BATCH_SIZE")
    parser.add_argument("--quick", action="store_true", help="defaults of 300/20/1,024/300 scans")
    parser.add_argument("--model-dir", type=Path, default=None, help="reuse a published model root")
    parser.add_argument(
        "--baseline-model-dir", type=Path, default=None,
        help="reuse a published model root for the baseline_2conv row (else one is trained)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON path")
    parser.add_argument("--receive-instances", type=int, default=INSTANCES, help="DICOM (200)")
    parser.add_argument(
        "--receive-only", action="store_true", help="only the DICOM receive stage; updates the "
        "`receive` key of the results file"
    )  # fmt: skip
    parser.add_argument(
        "--web-only", action="store_true", help="only the web stage; updates the `web` key of "
        "the results file"
    )  # fmt: skip
    options = parser.parse_args(argv)
    defaults = QUICK if options.quick else FULL
    for name, default in zip(SIZES, defaults, strict=True):
        if getattr(options, name) is None:
            setattr(options, name, default)
    for name in SIZES:
        if getattr(options, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    return options


def postgres_version(admin_url: str | None) -> str | None:
    if admin_url is None:
        return None
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url)
    with engine.connect() as connection:
        version = connection.execute(sa.text("SHOW server_version")).scalar()
    engine.dispose()
    return str(version)


def main(argv: list[str] | None = None) -> dict:
    from schemas.settings import get_settings

    options = parse(argv)
    console = Console()
    if options.receive_only:
        return receive_only(options, console)
    if options.web_only:
        return web_only(options, console)
    batch_size = options.batch_size or get_settings().batch_size
    started = time.perf_counter()
    with ExitStack() as stack:
        from bench.environment import STAT_RESERVE, open_environment

        env = open_environment(stack, options.scans + STAT_RESERVE, console, options.model_dir)
        if env.postgres_admin_url is None:
            raise SystemExit("the benchmark needs PostgreSQL (apt-get install postgresql)")
        results = run_stages(env, options, batch_size, console)
        results["versions"] = report.library_versions(postgres_version(env.postgres_admin_url))
    results["seconds"] = round(time.perf_counter() - started, 1)
    report.write(results, options.out, console)
    failed = {name: results[name]["error"] for name in LATE_STAGES if "error" in results[name]}
    if failed:
        reasons = "; ".join(f"{name}: {error}" for name, error in failed.items())
        raise SystemExit(f"stages failed (the others are in {options.out}): {reasons}")
    return results


def guarded(name: str, console: Console, stage, *args, **kwargs) -> dict:  # noqa: ANN001
    """A late stage whose failure must not throw away the measurements taken before it: its
    error goes into the results (and `main` exits non-zero after writing them)."""
    try:
        return stage(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - reported, and the run fails at the end
        console.print_exception()
        where = traceback.extract_tb(error.__traceback__)[-1]
        place = f"{Path(where.filename).name}:{where.lineno} in {where.name}"
        return {"error": f"{type(error).__name__}: {error} (at {place})"}


def run_stages(env, options: argparse.Namespace, batch_size: int, console: Console) -> dict:  # noqa: ANN001
    """Both ceilings; the production-settings column (pipeline for both served models, latency,
    the naive peer, DICOM receive); the fast-settings column; the network stage."""
    from bench.capacity import measure_in
    from bench.network import run_network
    from schemas.model_card import resolve_model_dir

    model_dir = resolve_model_dir(env.model_root)
    console.print(f"model {model_dir.name}; batch size {batch_size}; logs in {env.directory}")
    console.print(f"ceiling: {options.ceiling_scans:,} scans in batches of 256 ...")
    ceilings = {"default": in_fresh_process(model_dir, options.ceiling_scans)}
    baseline_root = options.baseline_model_dir or baseline_model_root(env, model_dir, console)
    ceilings["baseline"] = in_fresh_process(
        resolve_model_dir(baseline_root or env.model_root), options.ceiling_scans
    )
    production = settings_column(
        PRODUCTION, env, options, batch_size, ceilings, baseline_root, console
    )
    console.print(f"naive peer: {options.naive_scans:,} scans ...")
    naive_rate = run_naive(env, options.naive_scans, env.directory / "logs")
    received = receive_stage(env, options, console)
    fast = settings_column(FAST, env, options, batch_size, ceilings, baseline_root, console)
    apply_profile(PRODUCTION, env.postgres_admin_url, env.redis_url)
    console.print(f"network: {options.network_scans:,} scans over worker hosts, one cut off ...")
    network = guarded(
        "network", console, run_network, console, options.network_scans, model_root=env.model_root
    )
    capacity = guarded(
        "capacity", console, measure_in, env, console, **(CAPACITY_QUICK if options.quick else {})
    )
    web = guarded("web", console, web_stage, env, options, console)
    production["ratios"]["pipeline_over_naive"] = (
        production["pipeline_scans_per_s"]["sqlite"] / naive_rate
    )
    production["ratios"]["ceiling_over_baseline"] = ceilings["default"] / ceilings["baseline"]
    return {
        "ceiling_scans_per_s": ceilings["default"],
        "ceiling_baseline_scans_per_s": ceilings["baseline"],
        "naive_scans_per_s": naive_rate,
        **production,
        "fast_settings": fast,
        "baseline_is_served_model": baseline_root is None,
        "counts": {
            "pipeline": options.scans,
            "backlog": options.scans,
            "naive": options.naive_scans,
            "ceiling": options.ceiling_scans,
            "network": options.network_scans,
        },
        "batch_size": batch_size,
        "routine_concurrency": ROUTINE_CONCURRENCY,
        "model_version": model_dir.name,
        "machine": report.machine(),
        "receive": received,
        "network": network,
        "capacity": capacity,
        "web": web,
    }


def settings_column(
    profile: ServerProfile,
    env,  # noqa: ANN001 - bench.environment.BenchEnvironment
    options: argparse.Namespace,
    batch_size: int,
    ceilings: dict[str, float],
    baseline_root: Path | None,
    console: Console,
) -> dict:
    """One column: the servers set to `profile`, the pipeline for each served model and
    database, and the latency runs (default model)."""
    servers = apply_profile(profile, env.postgres_admin_url, env.redis_url)
    console.print(f"[bold]{profile.name} settings[/]: {servers}")
    logs = env.directory / "logs"
    rates: dict[str, dict[str, float]] = {"default": {}, "baseline": {}}
    rss, tree_rss = [], []
    for model, root in (("default", None), ("baseline", baseline_root)):
        for backend in BACKENDS:
            if model == "baseline" and baseline_root is None:
                rates[model][backend] = rates["default"][backend]  # the same served model
                continue
            console.print(f"pipeline ({profile.name}, {model} model) on {backend} ...")
            run = run_pipeline(env, backend, options.scans, batch_size, logs, root)
            rates[model][backend] = run.scans_per_s
            rss.append(run.worker_peak_rss_mib)
            tree_rss.append(run.worker_tree_peak_rss_mib)
    latency = {}
    for backend in BACKENDS:
        console.print(f"latency ({profile.name}) on {backend}: {options.scans:,} backlog ...")
        latency[backend] = run_latency(env, backend, options.scans, batch_size, logs)
        rss.append(latency[backend].routine_peak_rss_mib)
    return {
        "servers": servers,
        "pipeline_scans_per_s": rates["default"],
        "pipeline_baseline_scans_per_s": rates["baseline"],
        "ratios": column_ratios(rates, ceilings),
        "fixed_cost_us_per_scan": {
            model: {b: 1e6 * (1 / rates[model][b] - 1 / ceilings[model]) for b in BACKENDS}
            for model in rates
        },
        "urgent_escalation_ms": percentiles(latency["sqlite"].escalation_ms),
        "stat_time_to_result_ms": percentiles(latency["sqlite"].stat_ms),
        "latency_by_database": {backend: latency_summary(run) for backend, run in latency.items()},
        "worker_peak_rss_mib": max(rss),
        "worker_tree_peak_rss_mib": max(tree_rss),
    }


def column_ratios(rates: dict[str, dict[str, float]], ceilings: dict[str, float]) -> dict:
    """Pipeline over its own model's ceiling, per database, for both served models."""
    ratios = {}
    for model, infix in (("default", ""), ("baseline", "_baseline")):
        for backend in BACKENDS:
            ratios[f"pipeline_over_ceiling{infix}_{backend}"] = (
                rates[model][backend] / ceilings[model]
            )
    return ratios


def baseline_model_root(env, model_dir: Path, console: Console) -> Path | None:  # noqa: ANN001
    """Where baseline_2conv is published for the second row: None when the served model is
    one already, else a baseline trained briefly on phantoms beside the run."""
    from bench.environment import publish_baseline
    from schemas.model_card import read_card

    if read_card(model_dir).selected_candidate == "baseline_2conv":
        return None
    root = env.directory / "baseline-models"
    publish_baseline(root, console)
    return root


def receive_stage(env, options: argparse.Namespace, console: Console) -> dict:  # noqa: ANN001
    """DICOM instances/s beside storescp and bare pynetdicom, then study latency per database."""
    logs = env.directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    console.print(f"receive: {options.receive_instances} DICOM instances over storescu ...")
    databases = {backend: env.fresh_database(backend) for backend in BACKENDS}
    received = run_receive(env.directory, databases, options.receive_instances)
    for backend in BACKENDS:
        console.print(f"receive latency on {backend}: last instance -> decision, with workers ...")
        received[f"study_latency_{backend}"] = run_study_latency(env, backend, logs)
    return received


def receive_only(options: argparse.Namespace, console: Console) -> dict:
    """The receive stage alone; its numbers replace the `receive` key of the results file,
    the other keys stay."""
    from bench.environment import open_environment

    with ExitStack() as stack:
        env = open_environment(stack, 64, console, options.model_dir)
        if env.postgres_admin_url is None:
            raise SystemExit("the benchmark needs PostgreSQL (apt-get install postgresql)")
        apply_profile(PRODUCTION, env.postgres_admin_url, env.redis_url)
        received = receive_stage(env, options, console)
    results = json.loads(options.out.read_text()) if options.out.exists() else {}
    results["receive"] = received
    options.out.write_text(json.dumps(results, indent=2) + "\n")
    console.print_json(data=received)
    return results


def web_stage(env, options: argparse.Namespace, console: Console) -> dict:  # noqa: ANN001
    """The web stage on each database, workers classifying meanwhile (bench/web.py)."""
    from bench.web import parse as web_options
    from bench.web_workers import run_with_workers

    studies, urgent, requests = WEB_QUICK if options.quick else WEB_FULL
    measured = {}
    for backend in BACKENDS:
        console.print(f"web on {backend}: {studies:,} studies, {urgent:,} open urgent, "
                      "50 streams, workers running ...")  # fmt: skip
        chosen = web_options(
            ["--studies", str(studies), "--urgent", str(urgent), "--requests", str(requests),
             "--with-workers", *(["--postgres"] if backend == "postgresql" else [])]
        )  # fmt: skip
        measured[backend] = run_with_workers(chosen, env)
    return measured


def web_only(options: argparse.Namespace, console: Console) -> dict:
    """The web stage alone; its numbers replace the `web` key of the results file, the other
    keys stay."""
    from bench.environment import open_environment
    from bench.web_workers import FEED_SCANS

    with ExitStack() as stack:
        env = open_environment(stack, FEED_SCANS, console, options.model_dir)
        if env.postgres_admin_url is None:
            raise SystemExit("the benchmark needs PostgreSQL (apt-get install postgresql)")
        apply_profile(PRODUCTION, env.postgres_admin_url, env.redis_url)
        measured = web_stage(env, options, console)
    results = json.loads(options.out.read_text()) if options.out.exists() else {}
    results["web"] = measured
    options.out.write_text(json.dumps(results, indent=2) + "\n")
    console.print_json(data=measured)
    return results


def latency_summary(run) -> dict:  # noqa: ANN001 - bench.latency.LatencyRun
    return {
        "urgent_escalation_ms": percentiles(run.escalation_ms),
        "stat_time_to_result_ms": percentiles(run.stat_ms),
        "escalations": len(run.escalation_ms),
        "stat_scans": len(run.stat_ms),
        "backlog_drain_s": run.drain_seconds,
        "urgent_worker_peak_rss_mib": run.urgent_peak_rss_mib,
    }


if __name__ == "__main__":
    main()
