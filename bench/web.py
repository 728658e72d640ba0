"""The web stage: page and API latency on a big ledger, with 50 live worklist streams open,
optionally while workers classify new scans into the same ledger.

python -m bench.web                          # 100,000 studies, 5,000 open urgent, SQLite
python -m bench.web --postgres               # the same on a throwaway PostgreSQL cluster
python -m bench.web --with-workers --model-dir ~/.triage/models   # workers run meanwhile
python -m bench.web --studies 10000 --urgent 500 --requests 50   # a smoke run

Seeds the ledger with bulk inserts (one slice per study), starts a real `triage web` process,
and measures from this process over HTTP: the worklist page, GET /api/v1/worklist (its first
page) and a study page (p50/p95/p99 in ms, and the server's CPU ms per request), first with no
event streams open, then with `--streams` open ones (and, with `--with-workers`, a routine and
an urgent worker classifying phantoms fed in meanwhile); then acknowledges a study and counts
the streams that were told. `python -m bench` runs it as its `web` stage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
from pathlib import Path

from bench.web_load import run_web
from testkit.services import PostgresServer, create_database


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.web", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--urgent", type=int, default=5_000)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--database-url", help="default: a fresh SQLite file")
    where.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster")
    parser.add_argument("--with-workers", action="store_true",
                        help="a routine and an urgent worker classify phantoms meanwhile")  # fmt: skip
    parser.add_argument("--model-dir", type=Path, help="with workers: a published model root")
    options = parser.parse_args(argv)
    if options.urgent > options.studies or options.studies < 10 or options.requests < 1:
        parser.error("need --studies >= 10, --urgent <= --studies and --requests >= 1")
    return options


def main(argv: list[str] | None = None) -> dict:
    options = parse(argv)
    with contextlib.ExitStack() as stack:
        if options.with_workers:
            from bench.web_workers import open_and_run

            report = open_and_run(stack, options)
        else:
            directory = Path(tempfile.mkdtemp(prefix="triage-bench-web-"))
            stack.callback(shutil.rmtree, directory, ignore_errors=True)
            url = options.database_url or f"sqlite:///{directory / 'ledger.db'}"
            if options.postgres:
                url = throwaway_postgres(stack, directory)
            report = run_web(url, directory, options)
    print(json.dumps(report, indent=2))
    return report


def throwaway_postgres(stack: contextlib.ExitStack, directory: Path) -> str:
    """A fresh database on a PostgreSQL cluster of its own, stopped when `stack` closes."""
    directory.chmod(0o755)  # the postgres user must reach its cluster below it
    server = PostgresServer(directory / "postgres").start()
    stack.callback(server.stop, mode="immediate")
    return create_database(server.url)


if __name__ == "__main__":
    main()
