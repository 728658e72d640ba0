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


def limit_threads(threads: int) -> None:
    """TensorFlow's intra- and inter-op pools at `threads` each (before any op runs)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def main(model_dir: str, count: str, threads: str | None = None) -> None:
    from trainer.synth import make_phantoms

    if threads is not None:
        limit_threads(int(threads))
    scans, _ = make_phantoms(int(count), seed=2)
    rate = measure(Path(model_dir), scans)
    result = {"ceiling_scans_per_s": rate, "batch": BATCH, "scans": int(count)}
    if threads is not None:
        result["threads"] = int(threads)
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
