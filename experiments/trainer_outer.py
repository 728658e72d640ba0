"""What to publish, scored on every patient once: outer group K-fold (not part of the tests).

Each outer fold holds out 1/K of the patient groups as test; the rest is dealt 75/25 into
train / validation (whole groups), exactly as `triage train` would see it. Per outer fold:
- `single`: the candidate trained on train, early-stopped on validation, threshold from validation;
- `crossfit`: the mean of 4 copies cross-fitted over train+val, threshold from out-of-fold scores;
- `refit`: one copy trained on train+val for the single's best epoch count, threshold from the
  single's validation scores.
NOT nested for the choices made by looking at its output (the features of hog_linear, the
threshold ceiling, the default ensemble were chosen on these same outer folds, and new patients
scored 0.18-0.24 lower than it said): the nested estimate of the default recipe is
`triage estimate` (trainer/heads.py). Test predictions of all outer folds are pooled, so macro F1 and class-2 recall are computed over
all patients (all of class 1's ~19, instead of ~4 per split). Cached per fold under --cache.

python -m experiments.trainer_outer --data ../shared/data/iqothnccd_ct_dev.npz \\
    --groups ../shared/data/iqothnccd_ct_dev_manifest.csv --candidates pooled2_aug
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from experiments.real_scans import add_real_scan_options, cache_folder, load_real_scans

VARIANTS = ("single", "crossfit", "refit")
CEILINGS = (0.5, 1 / 3, 0.25)  # the flag's trade-off at other ceilings, for the record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_real_scan_options(parser, cache="/tmp/trainer_outer_cache")
    parser.add_argument("--outer", type=int, default=5)
    parser.add_argument("--outer-seed", type=int, default=0, help="another deal of the patients")
    parser.add_argument("--candidates", default="pooled2_aug")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()

    from trainer.candidates import CANDIDATES
    from trainer.crossfit import fold_of_images
    from trainer.data import deal_groups

    if any(CANDIDATES[name].fitted_heads for name in args.candidates.split(",")):
        raise SystemExit(
            "hog_heads makes its choices inside group folds: its nested estimate is "
            "`triage estimate` (trainer/train_heads.py), not this experiment"
        )
    scans, groups = load_real_scans(args)
    outer = fold_of_images(scans.labels, groups, args.outer, seed=args.outer_seed)
    cache = cache_folder(
        Path(args.cache) / (f"outer_seed{args.outer_seed}" if args.outer_seed else "")
    )
    pooled: dict[str, list[dict]] = {}
    for k in range(args.outer):
        rest, test = np.flatnonzero(outer != k), np.flatnonzero(outer == k)
        part = deal_groups(scans.labels[rest], groups[rest], (0.75, 0.25), seed=k)
        splits = {"train": rest[part == 0], "val": rest[part == 1], "test": test}
        for name in args.candidates.split(","):
            for variant in args.variants.split(","):
                fold = _fold(scans, groups, splits, name, variant, args, cache, k)
                fold["labels"] = scans.labels[test]
                pooled.setdefault(f"{name} {variant}", []).append(fold)
                print(f"fold {k} {name} {variant}: {float(fold['seconds']):.0f} s", flush=True)
    _print(pooled, args.outer, args.recall)


def _fold(scans, groups, splits, name, variant, args, cache, k) -> dict:  # noqa: ANN001
    """One outer fold's scores, from the cache or trained. An ensemble averages its members'
    (each cached on its own), as the trainer does: the same folds and seeds per member."""
    from trainer.candidates import CANDIDATES

    members = CANDIDATES[name].combines
    if members:
        folds = [_fold(scans, groups, splits, m, variant, args, cache, k) for m in members]
        mean = {key: np.mean([f[key] for f in folds], axis=0) for key in ("test", "held_probs")}
        return {**folds[0], **mean, "seconds": sum(float(f["seconds"]) for f in folds)}
    path = cache / f"{name}_{variant}_o{k}_e{args.epochs}_p{args.patience}.npz"
    if not path.exists():
        np.savez(path, **_run(scans, groups, splits, name, variant, args, cache, k))
    with np.load(path) as saved:
        return {key: saved[key] for key in saved.files}


def _run(scans, groups, splits, name, variant, args, cache, k) -> dict:  # noqa: ANN001
    """Test softmax of one variant, with the held-out scores that set its urgent threshold."""
    from imaging.canonical import to_model_input
    from trainer.balance import balance_by_augmentation
    from trainer.candidates import select_candidates
    from trainer.crossfit import cross_fit
    from trainer.fit import configure_tensorflow, fit_candidate, predict_proba

    configure_tensorflow()
    (candidate,) = select_candidates([name])
    test = to_model_input(scans.images[splits["test"]])
    pool = np.concatenate([splits["train"], splits["val"]])
    if variant == "crossfit":
        result = cross_fit(
            [candidate], name, scans.images[pool], scans.labels[pool], groups[pool], 4,
            args.epochs, k, args.patience,
        )  # fmt: skip
        return {
            "test": predict_proba(result.model, test),
            "held_probs": result.out_of_fold,
            "held_labels": scans.labels[pool],
            "held_groups": groups[pool],
            "seconds": result.seconds,
        }
    val = (to_model_input(scans.images[splits["val"]]), scans.labels[splits["val"]])
    held = {"held_labels": val[1], "held_groups": groups[splits["val"]]}
    if variant == "single":
        images, labels = balance_by_augmentation(
            scans.images[splits["train"]], scans.labels[splits["train"]], k
        )
        result = fit_candidate(
            candidate, (to_model_input(images), labels), val, args.epochs, k,
            patience=args.patience,
            original=(to_model_input(scans.images[splits["train"]]), scans.labels[splits["train"]]),
        )  # fmt: skip
        best = int(np.argmin(result.histories[0]["val_loss"])) + 1
        np.save(cache / f"{name}_single_o{k}_best_epoch.npy", best)
        held["held_probs"] = predict_proba(result.model, val[0])
    else:  # refit: train + val for the single's best epoch count, its validation threshold
        best_path = cache / f"{name}_single_o{k}_best_epoch.npy"
        if not best_path.exists():
            raise SystemExit("refit needs the single variant first (list it before refit)")
        with np.load(cache / f"{name}_single_o{k}_e{args.epochs}_p{args.patience}.npz") as single:
            held["held_probs"] = single["held_probs"]
        images, labels = balance_by_augmentation(scans.images[pool], scans.labels[pool], k)
        result = fit_candidate(
            candidate, (to_model_input(images), labels), None, int(np.load(best_path)), k,
            original=(to_model_input(scans.images[pool]), scans.labels[pool]),
        )  # fmt: skip
    return {"test": predict_proba(result.model, test), "seconds": result.seconds, **held}


def _print(pooled: dict[str, list[dict]], folds: int, recall: float) -> None:
    from schemas.model_card import predicted_classes
    from trainer.report import URGENT_THRESHOLD_CEILING, choose_class_weights, evaluate

    print(f"\npooled over {folds} outer group folds (every patient tested once); urgent flag by "
          f"the trainer's policy (ceiling {URGENT_THRESHOLD_CEILING:.2f}), then at other ceilings")  # fmt: skip
    print("macroF1: plain argmax; weighed: class weights chosen on each fold's held-out scores")
    print(f"{'variant':<26}{'macroF1':>8}{'weighed':>8}{'F1 0/1/2':>16}{'R2 argmax':>10}{'ceiling':>8}"
          f"{'R2@thr':>8}{'P2@thr':>8}{'flag 0/1':>10}  R2@thr per fold")  # fmt: skip
    for name, folds_ in pooled.items():
        y = np.concatenate([fold["labels"] for fold in folds_])
        p = np.concatenate([fold["test"] for fold in folds_])
        report = evaluate(y, p)
        weighed = np.concatenate([
            predicted_classes(fold["test"], choose_class_weights(fold["held_labels"], fold["held_probs"]))
            for fold in folds_
        ])  # fmt: skip
        weighed_f1 = evaluate(y, np.eye(3)[weighed])["macro_f1"]
        f1s = "/".join(f"{c['f1']:.2f}" for c in report["per_class"].values())
        for ceiling in (
            URGENT_THRESHOLD_CEILING,
            *(c for c in CEILINGS if c != URGENT_THRESHOLD_CEILING),
        ):
            fold_flags = [_flags(fold, recall, ceiling) for fold in folds_]  # one threshold each
            flags, urgent = np.concatenate(fold_flags), y == 2
            per_fold = [
                f"{flagged[fold['labels'] == 2].mean():.2f}"
                for flagged, fold in zip(fold_flags, folds_, strict=True)
            ]
            head = (f"{name:<26}{report['macro_f1']:>8.3f}{weighed_f1:>8.3f}{f1s:>16}"
                    f"{report['urgent_recall_argmax']:>10.3f}"
                    if ceiling == URGENT_THRESHOLD_CEILING else " " * 68)  # fmt: skip
            print(f"{head}{ceiling:>8.2f}{(flags & urgent).sum() / urgent.sum():>8.3f}"
                  f"{(flags & urgent).sum() / max(flags.sum(), 1):>8.3f}"
                  f"{flags[y == 0].mean():>5.2f}/{flags[y == 1].mean():.2f}  {' '.join(per_fold)}")  # fmt: skip


def _flags(fold: dict, recall: float, ceiling: float) -> np.ndarray:
    """The fold's test flags at the threshold its held-out scores give (trainer's rule)."""
    from trainer.report import URGENT_RECALL_CONFIDENCE, choose_urgent_threshold

    threshold = choose_urgent_threshold(
        fold["held_labels"], fold["held_probs"][:, 2], recall, ceiling,
        groups=fold["held_groups"], confidence=URGENT_RECALL_CONFIDENCE,
    )  # fmt: skip
    return fold["test"][:, 2] >= threshold


if __name__ == "__main__":
    main()
