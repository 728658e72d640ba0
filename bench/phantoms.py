"""How well the default recipe learns the phantoms: train on one seed, score fresh ones.

python -m bench.phantoms [--train 600] [--test 600] [--epochs N] [--out /tmp/phantom_bench]

Trains what `triage train` trains (every candidate + `ensemble_best`, selection by
out-of-fold macro F1; `--folds 0`: two folds, no estimate) on TRAIN phantoms of seed 0, then
scores the published model on TEST phantoms of seed 7 at the card's class weights and
urgent threshold. Prints one JSON object: the selected candidate, macro F1, urgent recall and
precision, the share flagged and the training time. Synthetic: says nothing about patients.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

TRAIN_MIX = (0.34, 0.33, 0.33)
TEST_SEED = 7


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.phantoms", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--test", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("/tmp/phantom_bench"))
    args = parser.parse_args()

    from rich.console import Console

    from trainer.inference import load_model, probabilities
    from trainer.report import evaluate
    from trainer.synth import make_phantoms
    from trainer.train import run_training

    started = time.perf_counter()
    images, labels = make_phantoms(args.train, TRAIN_MIX, seed=0)
    log = io.StringIO()
    published = run_training(
        (images, labels), out=args.out, epochs=args.epochs, seed=0, folds=0,
        console=Console(file=log, width=170),
    )  # fmt: skip
    seconds = time.perf_counter() - started
    loaded = load_model(published)
    test_images, test_labels = make_phantoms(args.test, TRAIN_MIX, seed=TEST_SEED)
    card = loaded.card
    report = evaluate(
        test_labels, probabilities(loaded, test_images), card.urgent_threshold, card.class_weights
    )
    print(log.getvalue())
    result = {
        "selected": card.selected_candidate,
        "train_scans": args.train,
        "test_scans": args.test,
        "training_seconds": round(seconds, 1),
        "macro_f1": round(report["macro_f1"], 3),
        "f1_per_class": [round(report["per_class"][n]["f1"], 3) for n in report["per_class"]],
        "urgent_recall": round(report["urgent_recall"], 3),
        "urgent_precision": round(report["urgent_precision"], 3),
        "flagged_share": round(report["flagged_share"], 3),
        "threshold": round(card.urgent_threshold, 4),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
