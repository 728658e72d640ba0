"""Stage 1: the physical limit, the published model's batched forward throughput.

Runs in its own process (`python -m bench.ceiling MODEL_DIR SCANS [THREADS]`), with TensorFlow
set up exactly as a worker sets it up (or, given THREADS, limited to that many intra- and
inter-op threads: THREADS=1 is one core's rate, for bench/capacity.py), and the same inference
path the worker uses:
`ServingModel.probabilities` (uint8 -> float input, one traced forward pass per batch).
Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

BATCH = 256
REPEATS = 3


def measure(model_dir: Path, scans: np.ndarray, batch: int = BATCH) -> float:
    """Best of `REPEATS` passes over `scans` in batches of `batch`, in scans per second."""
    from worker.model import load_model

    model = load_model(model_dir)
    model.probabilities(scans[:batch])  # trace and warm up
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for start in range(0, len(scans), batch):
            model.probabilities(scans[start : start + batch])
        best = min(best, time.perf_counter() - started)
    return len(scans) / best


def in_fresh_process(model_dir: Path, count: int, threads: int | None = None) -> float:
    """`python -m bench.ceiling MODEL_DIR COUNT [THREADS]` in a new process (set up like a
    worker's, nothing warm from this one): its scans per second."""
    import subprocess

    command = [sys.executable, "-m", "bench.ceiling", str(model_dir), str(count)]
    command += [str(threads)] if threads is not None else []
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["ceiling_scans_per_s"])


def main(model_dir: str, count: str, threads: str | None = None) -> None:
    from trainer.synth import make_phantoms

    if threads is not None:
        from trainer.fit import configure_tensorflow

        configure_tensorflow(int(threads))
    scans, _ = make_phantoms(int(count), seed=2)
    rate = measure(Path(model_dir), scans)
    result = {"ceiling_scans_per_s": rate, "batch": BATCH, "scans": int(count)}
    if threads is not None:
        result["threads"] = int(threads)
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
