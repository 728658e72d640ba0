"""Generalisation of trainer candidates over several group-aware splits (not part of the tests).

Each split seed gives another group-aware 60/20/20 split; every candidate is trained on its
balanced training split with early stopping on validation, and scored on its test split (other
patients). Reports mean and spread over the splits of test macro F1, class-1 F1, class-2 recall
(argmax) and class-2 recall / precision at the threshold chosen on validation. Also scores
post-hoc ensembles (mean softmax of trained candidates) and a class-1 decision offset chosen on
validation. Probabilities are cached per (candidate, seed, epochs, patience) under --cache.
Each test split holds only about four benign patients, so class-1 numbers here are noisy:
experiments/trainer_outer.py scores every patient once (and the cross-fit the trainer publishes).

python -m experiments.trainer_cv --data ../shared/data/iqothnccd_ct_dev.npz \\
    --groups ../shared/data/iqothnccd_ct_dev_manifest.csv --seeds 1,2,3 \\
    --candidates pooled2_aug,full3_aug --ensembles pooled2_aug+full3_aug
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from experiments.real_scans import add_real_scan_options, cache_folder, load_real_scans

C1_SCALES = (1.0, 1.5, 2.0, 3.0, 4.0)  # multipliers on P(class 1) tried on validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_real_scan_options(parser, cache="/tmp/trainer_cv_cache")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--candidates", default="pooled2_aug,full3_aug")
    parser.add_argument("--ensembles", default="", help="e.g. a+b,a+c (mean softmax)")
    args = parser.parse_args()

    from trainer.data import split_indices
    from trainer.report import choose_class_weights

    scans, groups = load_real_scans(args)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    names = [name for name in args.candidates.split(",") if name]
    ensembles = [tuple(e.split("+")) for e in args.ensembles.split(",") if e]
    cache = cache_folder(args.cache)

    scores: dict[str, list[dict]] = {}
    for seed in seeds:
        splits = split_indices(scans.labels, groups, seed)
        labels = {split: scans.labels[splits[split]] for split in ("val", "test")}
        probs = {}
        for name in sorted(set(names) | {m for e in ensembles for m in e}):
            path = cache / f"{name}_s{seed}_e{args.epochs}_p{args.patience}.npz"
            if not path.exists():
                val, test, info = _train(scans, splits, name, seed, args.epochs, args.patience)
                np.savez(path, val=val, test=test, **info)
            with np.load(path) as saved:
                probs[name] = (saved["val"], saved["test"])
                if name in names:
                    print(f"seed {seed} {name}: {int(saved['epochs'])} epochs "
                          f"{float(saved['seconds']):.0f} s", flush=True)  # fmt: skip
        for ensemble in ensembles:
            probs["+".join(ensemble)] = tuple(
                np.mean([probs[m][i] for m in ensemble], axis=0) for i in (0, 1)
            )
        for name in [*names, *("+".join(e) for e in ensembles)]:
            val, test = probs[name]
            scores.setdefault(name, []).append(_score(labels, val, test, args.recall))
            weights = choose_class_weights(labels["val"], val, C1_SCALES)
            shifted = tuple(p * np.array(weights) for p in (val, test))
            row = _score(labels, *shifted, args.recall)
            row["c1_scale"] = weights[1]
            scores.setdefault(name + " +c1offset", []).append(row)
    _print_table(scores, seeds)
    out = cache / "summary.json"
    out.write_text(json.dumps({"seeds": seeds, "scores": scores}, indent=1))
    print(f"per-split scores: {out}")


def _train(scans, splits, name: str, seed: int, epochs: int, patience: int):  # noqa: ANN001, ANN202
    from imaging.canonical import to_model_input
    from trainer.balance import balance_by_augmentation
    from trainer.candidates import select_candidates
    from trainer.fit import configure_tensorflow, fit_candidate, predict_proba

    configure_tensorflow()
    (candidate,) = select_candidates([name])
    images, labels = balance_by_augmentation(
        scans.images[splits["train"]], scans.labels[splits["train"]], seed
    )
    val = (to_model_input(scans.images[splits["val"]]), scans.labels[splits["val"]])
    test = to_model_input(scans.images[splits["test"]])
    original = (to_model_input(scans.images[splits["train"]]), scans.labels[splits["train"]])
    result = fit_candidate(
        candidate, (to_model_input(images), labels), val, epochs, seed, patience=patience,
        original=original,
    )  # fmt: skip
    info = {
        "epochs": max(len(h["loss"]) for h in result.histories),
        "seconds": result.seconds,
    }
    return predict_proba(result.model, val[0]), predict_proba(result.model, test), info


def _score(labels: dict, val: np.ndarray, test: np.ndarray, recall: float) -> dict:
    from trainer.report import (
        URGENT_THRESHOLD_CEILING,
        choose_urgent_threshold,
        evaluate,
        urgent_flag_metrics,
    )

    threshold = choose_urgent_threshold(labels["val"], val[:, 2], recall)
    test_report = evaluate(labels["test"], test, threshold)
    # r2_cap / p2_cap: the flag P(2) >= min(threshold, the trainer's ceiling)
    capped = urgent_flag_metrics(
        labels["test"], test[:, 2], min(threshold, URGENT_THRESHOLD_CEILING)
    )
    return {
        "val_f1": evaluate(labels["val"], val)["macro_f1"],
        "f1": test_report["macro_f1"],
        "f1_c1": test_report["per_class"][_class_name(1)]["f1"],
        "r2": test_report["urgent_recall_argmax"],
        "r2_thr": test_report["urgent_recall"],
        "p2_thr": test_report["urgent_precision"],
        "r2_cap": capped["urgent_recall"],
        "p2_cap": capped["urgent_precision"],
    }


def _class_name(index: int) -> str:
    from schemas.model_card import CLASS_NAMES

    return CLASS_NAMES[index]


def _print_table(scores: dict[str, list[dict]], seeds: list[int]) -> None:
    keys = ("val_f1", "f1", "f1_c1", "r2", "r2_thr", "p2_thr", "r2_cap", "p2_cap")
    print(f"\n{len(seeds)} group-aware splits (seeds {seeds}); mean±std/min")
    print(f"{'candidate':<34}" + "".join(f"{k:>17}" for k in keys))
    for name, rows in scores.items():
        cells = []
        for key in keys:
            values = np.array([row[key] for row in rows], dtype=float)
            cells.append(f"{values.mean():.3f}±{values.std():.3f}/{values.min():.2f}")
        print(f"{name:<34}" + "".join(f"{c:>17}" for c in cells))
    if any("c1_scale" in row for rows in scores.values() for row in rows):
        for name, rows in scores.items():
            if "c1_scale" in rows[0]:
                print(f"  {name}: class-1 scale chosen on val {[r['c1_scale'] for r in rows]}")


if __name__ == "__main__":
    main()
