"""Everything a benchmark run needs, started here and torn down afterwards.

A temp directory with a Redis server on loopback, a PostgreSQL (a throwaway cluster; without
PostgreSQL installed, TRIAGE_TEST_POSTGRES_URL's server), a published model (the default
recipe, as `triage train` trains it: on the real dev scans when they are here, else on
phantoms) and synthetic phantom scans.
"""

from __future__ import annotations

import io
import itertools
import os
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from schemas.model_card import ModelNotFoundError, resolve_model_dir
from schemas.settings import Settings
from testkit.environment import settings_pointed_at
from testkit.services import PostgresServer, RedisServer, create_database, postgres_bin_dir

BASELINE_SCANS = 1500  # the seed's 2-conv, the comparison row (speed does not depend on fit)
BASELINE_EPOCHS = 10
BASELINE_MIX = (0.6, 0.25, 0.15)
SCAN_MIX = (0.79, 0.18, 0.03)  # the original problem's class mix
STAT_RESERVE = 20  # extra scans for the stat scans enqueued behind the backlog
REAL_NAME = "iqothnccd_ct_dev.npz"
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class BenchEnvironment:
    """Servers, model and scans shared by the stages of one run."""

    directory: Path
    redis_url: str
    postgres_admin_url: str | None
    model_root: Path
    scans: np.ndarray
    _redis_databases: itertools.count = field(default_factory=lambda: itertools.count(1))
    _runs: itertools.count = field(default_factory=itertools.count)

    def fresh_database(self, backend: str) -> str:
        """A new empty database URL on `backend` (sqlite or postgresql)."""
        if backend == "sqlite":
            return f"sqlite:///{self.directory / f'run{next(self._runs)}.db'}"
        if self.postgres_admin_url is None:
            raise ValueError("PostgreSQL is not available on this machine")
        return create_database(self.postgres_admin_url)

    def settings(
        self, database_url: str, model_root: Path | None = None, **overrides: object
    ) -> Settings:
        """Settings for one stage: its own database and Redis database number (flushed), and
        the published model (`model_root`, else the run's)."""
        import redis

        number = next(self._redis_databases) % 16
        redis_url = f"{self.redis_url.rsplit('/', 1)[0]}/{number}"
        redis.Redis.from_url(redis_url).flushdb()
        return Settings(
            data_dir=self.directory / "data",
            database_url=database_url,
            redis_url=redis_url,
            model_dir=model_root or self.model_root,
            **overrides,
        )


def real_scans() -> tuple[Path, Path] | None:
    """The real dev scans and their manifest (TRIAGE_REAL_DATA, else ../shared/data), if any."""
    data = Path(os.environ.get("TRIAGE_REAL_DATA") or REPO_ROOT.parent / "shared/data" / REAL_NAME)
    manifest = data.with_name(data.stem + "_manifest.csv")
    return (data, manifest) if data.is_file() and manifest.is_file() else None


def publish_model(model_root: Path, console) -> Path:  # noqa: ANN001 - rich Console
    """Publish what users serve: the default recipe, trained on the real dev scans when they
    are here, else on phantoms (trainer.phantom_model: the same candidates and selection)."""
    from rich.console import Console

    from trainer.phantom_model import TRAIN_SCANS, publish_on_phantoms
    from trainer.train import run_training

    quiet = Console(file=io.StringIO(), width=170)
    found = real_scans()
    if found is not None:
        console.print("publishing a model: the default recipe on the real dev scans ...")
        return run_training(
            str(found[0]), out=model_root, seed=0, groups=found[1],
            group_column="pseudo_case", folds=0, console=quiet,  # serving, not its estimate
        )  # fmt: skip
    console.print(f"publishing a model: the default recipe on {TRAIN_SCANS:,} phantoms ...")
    return publish_on_phantoms(model_root)


def publish_baseline(model_root: Path, console) -> Path:  # noqa: ANN001 - rich Console
    """The seed's 2-conv CNN, trained briefly on phantoms (speed does not depend on how well)."""
    from rich.console import Console

    from trainer.synth import make_phantoms
    from trainer.train import run_training

    console.print(f"publishing a model: baseline_2conv, {BASELINE_EPOCHS} epochs on phantoms ...")
    images, labels = make_phantoms(BASELINE_SCANS, BASELINE_MIX, seed=0)
    quiet = Console(file=io.StringIO(), width=170)
    return run_training(
        (images, labels),
        out=model_root,
        epochs=BASELINE_EPOCHS,
        seed=0,
        candidates=("baseline_2conv",),
        folds=0,  # one model: the benchmark measures serving, not training quality
        console=quiet,
    )


def open_environment(
    stack: ExitStack,
    scans: int,
    console,
    model_root: Path | None = None,  # noqa: ANN001
) -> BenchEnvironment:
    """Start the servers, publish (or reuse) a model and make `scans` phantoms."""
    from trainer.synth import make_phantoms

    directory = Path(tempfile.mkdtemp(prefix="triage-bench-"))
    directory.chmod(0o755)  # the postgres user must reach its cluster below it
    stack.callback(shutil.rmtree, directory, ignore_errors=True)
    redis_server = RedisServer(directory / "redis").start()
    stack.callback(redis_server.stop)
    stack.enter_context(
        settings_pointed_at(
            {"TRIAGE_DATA_DIR": str(directory / "data"), "TRIAGE_REDIS_URL": redis_server.url}
        )
    )
    # a cluster of its own when PostgreSQL is installed: the columns switch its settings
    # (bench/profiles.py), which a shared server (TRIAGE_TEST_POSTGRES_URL) may not allow
    postgres_url = os.environ.get("TRIAGE_TEST_POSTGRES_URL")
    if postgres_bin_dir() is not None:
        server = PostgresServer(directory / "postgres").start(fsync=None)
        stack.callback(server.stop, mode="immediate")
        postgres_url = server.url
    if model_root is None:
        model_root = directory / "models"
    try:
        resolve_model_dir(model_root)
    except ModelNotFoundError:
        publish_model(model_root, console)
    console.print(f"making {scans:,} synthetic phantom scans ...")
    images, _ = make_phantoms(scans, SCAN_MIX, seed=1)
    return BenchEnvironment(directory, redis_server.url, postgres_url, model_root, images)
