"""Serving cost of a published model against `baseline_2conv` published alone.

python -m bench.serving [MODEL_DIR] [--scans 20480] [--work /tmp/serving_bench]

Without MODEL_DIR, the default recipe trained on phantoms (trainer.phantom_model, what the
demo and `make bench` serve without real scans) is published under WORK and measured. Publishes `baseline_2conv` (`--candidates baseline_2conv --folds 0`, 1 epoch on phantoms:
speed does not depend on training), writes SCANS phantom scans to a .npy, then for each model
times `triage predict` end to end (a fresh process: load, predict, write the CSV; best of 3)
with its peak resident memory, and the forward ceiling (bench/ceiling.py, the worker's
inference path, in a fresh process). Prints one JSON object with the ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.ceiling import in_fresh_process

REPEATS = 3


def _triage() -> str:
    return str(Path(sys.executable).with_name("triage"))


_WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "started = time.perf_counter()\n"
    "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
    "print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def time_predict(model: Path, scans: Path, out: Path) -> tuple[float, float]:
    """Best wall time of `triage predict` over REPEATS runs, and its peak RSS in MiB (each
    run measured by its own parent process, so the peaks of other runs don't mix in)."""
    best, peak = float("inf"), 0.0
    for _ in range(REPEATS):
        command = [_triage(), "predict", "--model", str(model), "--data", str(scans)]
        result = subprocess.run(
            [sys.executable, "-c", _WRAPPER, *command, "--out", str(out)],
            check=True,
            capture_output=True,
            text=True,
        )
        seconds, rss_kib = result.stdout.split()
        best, peak = min(best, float(seconds)), max(peak, float(rss_kib))
    return best, peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serving", description=__doc__.splitlines()[0]
    )
    parser.add_argument("model", type=Path, nargs="?", default=None)
    parser.add_argument("--scans", type=int, default=20480)
    parser.add_argument("--work", type=Path, default=Path("/tmp/serving_bench"))
    args = parser.parse_args()

    from schemas.model_card import resolve_model_dir
    from trainer.synth import make_phantoms
    from trainer.train import run_training

    args.work.mkdir(parents=True, exist_ok=True)
    scans = args.work / "scans.npy"
    if not scans.is_file():
        np.save(scans, make_phantoms(args.scans, seed=2)[0])
    baseline_root = args.work / "baseline_2conv"
    if not (baseline_root / "CURRENT").is_file():
        images, labels = make_phantoms(600, mix=(0.5, 0.25, 0.25), seed=3)
        run_training(
            (images, labels), baseline_root, epochs=1, candidates=("baseline_2conv",), folds=0
        )
    if args.model is None:
        args.model = args.work / "default_recipe"
        if not (args.model / "CURRENT").is_file():
            from trainer.phantom_model import publish_on_phantoms

            publish_on_phantoms(args.model)
    models = {
        "model": resolve_model_dir(args.model),
        "baseline_2conv": resolve_model_dir(baseline_root),
    }
    results = {}
    for name, model in models.items():
        seconds, rss = time_predict(model, scans, args.work / f"{name}.csv")
        results[name] = {
            "predict_seconds": round(seconds, 2),
            "predict_scans_per_s": round(args.scans / seconds, 1),
            "predict_peak_rss_mib": round(rss, 1),
            "ceiling_scans_per_s": round(in_fresh_process(model, args.scans), 1),
            "model_bytes": (resolve_model_dir(model) / "model.keras").stat().st_size,
        }
    model, baseline = results["model"], results["baseline_2conv"]
    results["predict_speed_ratio"] = round(
        model["predict_scans_per_s"] / baseline["predict_scans_per_s"], 2
    )
    results["ceiling_ratio"] = round(
        model["ceiling_scans_per_s"] / baseline["ceiling_scans_per_s"], 2
    )
    results["scans"] = args.scans
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
