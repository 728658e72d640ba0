"""The training run: load -> split -> balance -> candidates -> select -> cross-fit -> publish.

Order matters for honesty: candidates are compared on the validation split only; the chosen
recipe is then cross-fitted over the training and validation patients (trainer.crossfit), whose
out-of-fold predictions set the urgent threshold and the class weights of the predicted class;
the test split, never seen by any of it, is scored last, for the report.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from schemas.model_card import ModelCard
from schemas.scans import to_model_input
from trainer.balance import balance_by_augmentation, class_counts
from trainer.candidates import Candidate, named_candidates, select_candidates
from trainer.crossfit import cross_fit
from trainer.data import (
    SPLITS,
    ScanSet,
    load_groups,
    load_scans,
    scan_set_from_arrays,
    split_indices,
)
from trainer.fit import (
    FitResult,
    combine_results,
    configure_tensorflow,
    fit_candidate,
    predict_proba,
)
from trainer.publish import library_versions, new_version, publish, staging_dir
from trainer.report import (
    URGENT_RECALL_CONFIDENCE,
    URGENT_THRESHOLD_CEILING,
    candidate_table,
    choose_class_weights,
    class_count_table,
    evaluate,
    plot_confusion,
    plot_history,
    select_best,
    urgent_threshold,
)

DEFAULT_EPOCHS = 60
DEFAULT_FOLDS = 4  # cross-fit copies of the chosen recipe; 0 publishes the candidate as trained


def run_training(
    data: str | Path | ScanSet | tuple[np.ndarray, np.ndarray],
    out: str | Path | None = None,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    candidates: list[str] | tuple[str, ...] | None = None,
    groups: str | Path | None = None,
    group_column: str | None = None,
    urgent_recall: float | None = None,
    patience: int = 10,
    folds: int = DEFAULT_FOLDS,
    console=None,  # noqa: ANN001 - rich.console.Console
) -> Path:
    """Train, compare, cross-fit the best and publish it; returns the published model directory."""
    from rich.console import Console

    from schemas.settings import get_settings

    started = time.perf_counter()
    console = console or Console()
    if not console.is_terminal:  # logs and pipes: keep the candidate table on one line a row
        console.width = max(console.width, 170)
    settings = get_settings()
    out = Path(out) if out is not None else settings.resolved_model_dir
    urgent_recall = urgent_recall if urgent_recall is not None else settings.urgent_recall
    competing = named_candidates(candidates)  # an ensemble's unnamed members don't compete
    chosen = select_candidates(competing)
    scans = _as_scan_set(data)
    if groups is not None and not group_column:
        raise ValueError("--groups needs --group-column naming the group column")
    if folds == 1 or folds < 0:
        raise ValueError(f"--folds must be 0 (no cross-fit) or at least 2, got {folds}")
    group_ids = load_groups(groups, group_column, len(scans.images)) if groups else None
    splits = scans.given_splits or split_indices(scans.labels, group_ids, seed)
    configure_tensorflow()

    train_images, train_labels = scans.images[splits["train"]], scans.labels[splits["train"]]
    balanced_images, balanced_labels = balance_by_augmentation(train_images, train_labels, seed)
    counts = {split: class_counts(scans.labels[splits[split]]) for split in SPLITS}
    counts["train (balanced)"] = class_counts(balanced_labels)
    console.print(class_count_table(counts))
    if group_ids is not None:
        console.print(
            "group-aware split: "
            + ", ".join(f"{s} {len(set(group_ids[splits[s]]))} groups" for s in SPLITS)
        )

    val = (to_model_input(scans.images[splits["val"]]), scans.labels[splits["val"]])
    test = (to_model_input(scans.images[splits["test"]]), scans.labels[splits["test"]])
    train = (to_model_input(balanced_images), balanced_labels)
    original = (to_model_input(train_images), train_labels)
    with _progress(console) as progress:
        results: dict[str, FitResult] = {}
        for candidate in chosen:
            if candidate.combines:
                members = [results[name] for name in candidate.combines]
                results[candidate.name] = combine_results(candidate, members)
            else:
                results[candidate.name] = fit_candidate(
                    candidate, train, val, epochs, seed, progress, patience, original=original
                )

    # selection sees validation data only
    val_probabilities = {name: predict_proba(r.model, val[0]) for name, r in results.items()}
    selected = select_best(
        {name: evaluate(val[1], val_probabilities[name])["macro_f1"] for name in competing}
    )
    fingerprint = scans.fingerprint()
    version = new_version(fingerprint)
    staging = staging_dir(out, version)
    rows = []
    for candidate in chosen:
        result = results[candidate.name]
        threshold = urgent_threshold(
            val[1],
            val_probabilities[candidate.name],
            urgent_recall,
            _groups_of(group_ids, splits["val"]),
        )
        row = _report_row(
            candidate, result, val[1], val_probabilities[candidate.name], test, threshold
        )
        row["competes"] = candidate.name in competing
        rows.append(_with_plots(row, result, staging))
    console.print(candidate_table(rows, selected))

    best = next(row for row in rows if row["name"] == selected)
    if folds:
        pool = np.concatenate([splits["train"], splits["val"]])
        model, published_row, how = _cross_fit_selected(
            selected, scans.images[pool], scans.labels[pool], _groups_of(group_ids, pool),
            (folds, epochs, seed, patience), urgent_recall, test, staging, console,
        )  # fmt: skip
    else:
        model, how = (
            results[selected].model,
            "the selected candidate as trained on the training split",
        )
        published_row = _report_row(
            next(c for c in chosen if c.name == selected), results[selected], val[1],
            val_probabilities[selected], test, best["val"]["threshold"],
            choose_class_weights(val[1], val_probabilities[selected]),
        )  # fmt: skip
    console.print(candidate_table([published_row], published_row["name"], "Published model"))
    threshold = published_row["val"]["threshold"]
    class_weights = published_row["val"]["class_weights"]
    rule = (
        f"class-2 recall >= {urgent_recall} on the held-out scans ('validation' below) in "
        f"{URGENT_RECALL_CONFIDENCE:.0%} of bootstrap resamples of their urgent "
        f"{'patients' if group_ids is not None else 'scans'}, and never above "
        f"{URGENT_THRESHOLD_CEILING}"
    )
    console.print(
        f"selected [bold]{selected}[/]; published {published_row['name']}; urgent threshold "
        f"{threshold:.4f} ({'out-of-fold' if folds else 'validation'} class-2 recall "
        f"{published_row['val']['urgent_recall']:.3f}; rule: {rule}); "
        f"test at threshold: recall {published_row['test']['urgent_recall']:.3f}, "
        f"precision {published_row['test']['urgent_precision']:.3f}; predicted class: argmax "
        f"of P x {class_weights} (weights chosen on the same held-out scans)"
    )
    card = ModelCard(
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        urgent_threshold=threshold,
        urgent_target_recall=urgent_recall,
        urgent_threshold_rule=rule,
        class_weights=class_weights,
        selected_candidate=selected,
        published_model=how,
        data_fingerprint=fingerprint,
        class_counts=counts,
        candidates=rows,
        metrics={
            "val": published_row["val"],
            "test": published_row["test"],
            "selected_candidate_test": best["test"],
            "split_seed": seed,
            "folds": folds,
        },
        training_seconds=round(time.perf_counter() - started, 1),
        library_versions=library_versions(),
        synthetic_data=scans.synthetic,
    )
    published_dir = publish(model, staging, card)
    console.print(
        f"published {published_dir} ({card.training_seconds:.0f} s); CURRENT -> {version}"
    )
    return published_dir


def _groups_of(group_ids: np.ndarray | None, indices: np.ndarray) -> np.ndarray | None:
    return None if group_ids is None else group_ids[indices]


def _cross_fit_selected(
    selected: str,
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None,
    schedule: tuple[int, int, int, int],
    urgent_recall: float,
    test: tuple[np.ndarray, np.ndarray],
    staging: Path,
    console,  # noqa: ANN001 - rich.console.Console
) -> tuple[object, dict, str]:
    """Cross-fit the selected recipe over train + val: the model, its report row (threshold
    and 'val' metrics from the out-of-fold scores) and a sentence for the card."""
    folds, epochs, seed, patience = schedule
    recipe = [c for c in select_candidates([selected]) if not c.combines]
    console.print(
        f"cross-fitting {selected} over {folds} folds of the training + validation "
        f"{'groups' if groups is not None else 'images'} ..."
    )
    with _progress(console) as progress:
        crossfit = cross_fit(
            recipe, selected, images, labels, groups, folds, epochs, seed, patience, progress
        )
    threshold = urgent_threshold(labels, crossfit.out_of_fold, urgent_recall, groups)
    weights = choose_class_weights(labels, crossfit.out_of_fold)
    result = FitResult(crossfit.model, crossfit.histories, crossfit.seconds)
    published = Candidate(f"{selected}_x{folds}", f"{folds} cross-fitted copies of {selected}")
    row = _report_row(published, result, labels, crossfit.out_of_fold, test, threshold, weights)
    how = (
        f"mean softmax of {folds} copies of {selected}, each trained on {folds - 1} of "
        f"{folds} folds of the training + validation split; urgent threshold and the "
        "class weights and the 'val' metrics from the out-of-fold predictions"
    )
    return crossfit.model, _with_plots(row, result, staging), how


def _report_row(
    candidate: Candidate,
    result: FitResult,
    val_labels: np.ndarray,
    val_probabilities: np.ndarray,
    test: tuple[np.ndarray, np.ndarray],
    threshold: float,
    class_weights: list[float] | None = None,
) -> dict:
    """One candidate-table row: validation and test reports at the candidate's own threshold
    (predicted class: plain argmax, or the published model's weighted one)."""
    return {
        "name": candidate.name,
        "description": candidate.description,
        "baseline": candidate.baseline,
        "epochs": max(len(h.get("loss", [])) for h in result.histories),
        "seconds": round(result.seconds, 1),
        "val": evaluate(val_labels, val_probabilities, threshold, class_weights),
        "test": evaluate(test[1], predict_proba(result.model, test[0]), threshold, class_weights),
    }


def _with_plots(row: dict, result: FitResult, staging: Path) -> dict:
    """Write the row's training curves and test confusion matrix as PNGs next to the card."""
    name = row["name"]
    plot_history(result.histories, staging / f"curves_{name}.png", name)
    plot_confusion(
        row["test"]["confusion_matrix"], staging / f"confusion_{name}.png", f"{name} (test)"
    )
    return row


def _progress(console):  # noqa: ANN001, ANN202 - rich objects
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:<26}"), BarColumn(), MofNCompleteColumn())
    columns += (TimeElapsedColumn(), TextColumn("{task.fields[status]}"))
    return Progress(*columns, console=console)


def _as_scan_set(data: str | Path | ScanSet | tuple[np.ndarray, np.ndarray]) -> ScanSet:
    if isinstance(data, ScanSet):
        return data
    if isinstance(data, tuple):
        return scan_set_from_arrays(*data)
    return load_scans(data, require_labels=True)
