"""The training run: load -> split -> balance -> candidates -> select -> cross-fit -> publish.

The default candidate, `hog_heads`, takes another path (trainer.train_heads): no split, every
choice inside group folds, a nested estimate on the card. This module runs named CNN
candidates and ensembles the old way, below.

Order matters for honesty: candidates are compared on the validation split only; the chosen
recipe is then cross-fitted over the training and validation patients (trainer.crossfit), whose
out-of-fold predictions set the urgent threshold and the class weights of the predicted class;
the test split, never seen by any of it, is scored last, for the report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from imaging.canonical import to_model_input
from schemas.model_card import ExpectedUnseen, ModelCard
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
from trainer.heads import choose_study_rule
from trainer.publish import library_versions, publish, reserve_version
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
from trainer.train_heads import expected_unseen_lines

DEFAULT_EPOCHS = 60
DEFAULT_FOLDS = 4  # cross-fit copies of the chosen recipe; 0 publishes the candidate as trained


@dataclass(frozen=True)
class Splits:
    """The float model inputs of one run: balanced train, unbalanced train, val and test."""

    train: tuple[np.ndarray, np.ndarray]
    original: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    counts: dict[str, dict]


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
    from schemas.settings import get_settings

    started = time.perf_counter()
    console = _wide_console(console)
    settings = get_settings()
    out = Path(out) if out is not None else settings.resolved_model_dir
    urgent_recall = urgent_recall if urgent_recall is not None else settings.urgent_recall
    competing, chosen = _chosen_candidates(candidates, folds)
    if any(c.fitted_heads for c in chosen):
        return _run_heads(
            data, groups, group_column, out, seed, folds, urgent_recall, console, started
        )
    scans, group_ids, indices = _load_and_split(data, groups, group_column, seed)
    configure_tensorflow()
    splits = _prepare_splits(scans, indices, group_ids, seed, console)
    results = _fit_all(chosen, splits, epochs, seed, patience, console)
    # selection sees validation data only
    val_probabilities = {name: predict_proba(r.model, splits.val[0]) for name, r in results.items()}
    selected = select_best(
        {name: evaluate(splits.val[1], val_probabilities[name])["macro_f1"] for name in competing}
    )
    fingerprint = scans.fingerprint()
    version, staging = reserve_version(out, fingerprint)
    rows = _candidate_rows(
        chosen, results, val_probabilities, splits, urgent_recall,
        _groups_of(group_ids, indices["val"]), staging,
    )  # fmt: skip
    for row in rows:
        row["competes"] = row["name"] in competing
    console.print(candidate_table(rows, selected))
    model, published_row, how, held = _published_model(
        selected, chosen, results, rows, val_probabilities[selected], scans, indices, group_ids,
        splits, (folds, epochs, seed, patience), urgent_recall, staging, console,
    )  # fmt: skip
    rule = _threshold_rule(urgent_recall, group_ids is not None)
    _print_published(console, selected, published_row, folds, rule)
    card = _card(version, fingerprint, published_row, rows, selected, how, rule, urgent_recall)
    card.class_counts, card.synthetic_data = splits.counts, scans.synthetic
    card.metrics.update(split_seed=seed, folds=folds)
    card.study_rule = choose_study_rule(*held, urgent_recall)
    card.expected_unseen = _test_split_estimate(
        model, card, splits.test, _groups_of(group_ids, indices["test"]), urgent_recall
    )
    card.training_seconds = round(time.perf_counter() - started, 1)
    return _publish_and_report(model, staging, card, console)


def _chosen_candidates(
    candidates: list[str] | tuple[str, ...] | None, folds: int
) -> tuple[list[Candidate], list[Candidate]]:
    """The competing candidates and every one to train (an ensemble's members too); rejects
    a bad `folds` and a candidate that fits its own heads named next to others."""
    competing = named_candidates(candidates)  # an ensemble's unnamed members don't compete
    chosen = select_candidates(competing)
    if folds == 1 or folds < 0:
        raise ValueError(f"--folds must be 0 (no cross-fit) or at least 2, got {folds}")
    heads = [c.name for c in chosen if c.fitted_heads]
    if heads and len(competing) > 1:
        raise ValueError(
            f"{heads[0]} makes its own choices inside group folds and is published alone; "
            "name it without other candidates"
        )
    return competing, chosen


def _run_heads(
    data: str | Path | ScanSet | tuple[np.ndarray, np.ndarray],
    groups: str | Path | None,
    group_column: str | None,
    out: Path,
    seed: int,
    folds: int,
    urgent_recall: float,
    console,  # noqa: ANN001 - rich.console.Console
    started: float,
) -> Path:
    """The hog_heads path (trainer.train_heads): every scan, no split, a nested estimate."""
    from trainer.train_heads import run_heads_training

    if groups is not None and not group_column:
        raise ValueError("--groups needs --group-column naming the group column")
    scans = _as_scan_set(data)
    group_ids = load_groups(groups, group_column, len(scans.images)) if groups else None
    return run_heads_training(scans, group_ids, out, seed, folds, urgent_recall, console, started)


def _publish_and_report(
    model,  # noqa: ANN001 - keras.Model
    staging: Path,
    card: ModelCard,
    console,  # noqa: ANN001 - rich.console.Console
) -> Path:
    """Publish the model with its card and print what new patients should show."""
    published_dir = publish(model, staging, card)
    for line in expected_unseen_lines(card):
        console.print(line, markup=False, highlight=False)
    console.print(
        f"published {published_dir} ({card.training_seconds:.0f} s); CURRENT -> {card.version}"
    )
    return published_dir


def _candidate_rows(
    chosen: list[Candidate],
    results: dict[str, FitResult],
    val_probabilities: dict[str, np.ndarray],
    splits: Splits,
    urgent_recall: float,
    val_groups: np.ndarray | None,
    staging: Path,
) -> list[dict]:
    """Every candidate's report row at its own validation threshold, with its plots."""
    rows = []
    for candidate in chosen:
        probabilities = val_probabilities[candidate.name]
        threshold = urgent_threshold(splits.val[1], probabilities, urgent_recall, val_groups)
        result = results[candidate.name]
        row = _report_row(candidate, result, splits.val[1], probabilities, splits.test, threshold)
        rows.append(_with_plots(row, result, staging))
    return rows


def _load_and_split(
    data: str | Path | ScanSet | tuple[np.ndarray, np.ndarray],
    groups: str | Path | None,
    group_column: str | None,
    seed: int,
) -> tuple[ScanSet, np.ndarray | None, dict[str, np.ndarray]]:
    """The labelled scans, their groups (if given) and the train/val/test indices."""
    if groups is not None and not group_column:
        raise ValueError("--groups needs --group-column naming the group column")
    scans = _as_scan_set(data)
    group_ids = load_groups(groups, group_column, len(scans.images)) if groups else None
    return scans, group_ids, scans.given_splits or split_indices(scans.labels, group_ids, seed)


def _published_model(
    selected: str,
    chosen: list[Candidate],
    results: dict[str, FitResult],
    rows: list[dict],
    val_probabilities: np.ndarray,
    scans: ScanSet,
    indices: dict[str, np.ndarray],
    group_ids: np.ndarray | None,
    splits: Splits,
    schedule: tuple[int, int, int, int],
    urgent_recall: float,
    staging: Path,
    console,  # noqa: ANN001 - rich.console.Console
) -> tuple[object, dict, str, tuple]:
    """The model to publish, its report row, a sentence on how it was made and the held-out
    (labels, probabilities, groups) its choices were made on: the selected recipe
    cross-fitted over train + val (`folds` > 0), or the selected candidate as trained."""
    if schedule[0]:
        pool = np.concatenate([indices["train"], indices["val"]])
        return _cross_fit_selected(
            selected, scans.images[pool], scans.labels[pool], _groups_of(group_ids, pool),
            schedule, urgent_recall, splits.test, staging, console,
        )  # fmt: skip
    candidate = next(c for c in chosen if c.name == selected)
    held = (splits.val[1], val_probabilities, _groups_of(group_ids, indices["val"]))
    return (*_as_trained(candidate, results[selected], rows, val_probabilities, splits), held)


def _test_split_estimate(
    model,  # noqa: ANN001 - keras.Model
    card: ModelCard,
    test: tuple[np.ndarray, np.ndarray],
    test_groups: np.ndarray | None,
    urgent_recall: float,
) -> ExpectedUnseen:
    """The cheaper stand-in for a nested estimate (candidates other than hog_heads): the test
    split, which no choice saw, resampled to a fresh set of ~50 patients. Not nested: one
    split of the patients, so the spread between splits is not in the range."""
    from trainer.heads import Scored, expected_unseen

    probabilities = predict_proba(model, test[0])
    groups = test_groups if test_groups is not None else np.arange(len(test[1]))
    scored = Scored(
        0, np.asarray(test[1]).astype(int), groups, probabilities,
        card.predicted_classes(probabilities), card.is_urgent(probabilities),
    )  # fmt: skip
    unseen = expected_unseen([scored], urgent_recall, grouped=test_groups is not None)
    units = f"{len(np.unique(groups))} {'patient groups' if test_groups is not None else 'scans'}"
    size, unit = (50, "patients") if test_groups is not None else (336, "scans")
    return ExpectedUnseen(
        macro_f1=unseen["macro_f1"],
        urgent_recall=unseen["urgent_recall"],
        urgent_precision=unseen["urgent_precision"],
        basis=f"test split only ({units}), which no choice saw; NOT nested: one split, so the "
        "spread between splits is missing from the range, and the candidate set was fixed "
        f"beforehand; 90 % interval of draws of ~{size} {unit} from these held-out scans",
        nested=False,
        patients=size,
        unit=unit,
        meets_target=unseen["meets_target"],
        details={"per_deal": unseen["per_deal"]},
    )


def _card(
    version: str,
    fingerprint: str,
    published: dict,
    rows: list[dict],
    selected: str,
    how: str,
    rule: str,
    urgent_recall: float,
) -> ModelCard:
    """The card of the published model (the caller adds counts, timing and the split seed)."""
    return ModelCard(
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        urgent_threshold=published["val"]["threshold"],
        urgent_target_recall=urgent_recall,
        urgent_threshold_rule=rule,
        class_weights=published["val"]["class_weights"],
        selected_candidate=selected,
        published_model=how,
        data_fingerprint=fingerprint,
        candidates=rows,
        metrics={
            "val": published["val"],
            "test": published["test"],
            "selected_candidate_test": next(r for r in rows if r["name"] == selected)["test"],
        },
        library_versions=library_versions(),
    )


def _wide_console(console):  # noqa: ANN001, ANN202 - rich.console.Console
    """The given console, or a new one; logs and pipes keep a candidate table row on one line."""
    from rich.console import Console

    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 170)
    return console


def _prepare_splits(
    scans: ScanSet,
    indices: dict[str, np.ndarray],
    group_ids: np.ndarray | None,
    seed: int,
    console,  # noqa: ANN001 - rich.console.Console
) -> Splits:
    """Balance the training split by augmentation, print the class counts, make model inputs."""
    train_images, train_labels = scans.images[indices["train"]], scans.labels[indices["train"]]
    balanced_images, balanced_labels = balance_by_augmentation(train_images, train_labels, seed)
    counts = {split: class_counts(scans.labels[indices[split]]) for split in SPLITS}
    counts["train (balanced)"] = class_counts(balanced_labels)
    console.print(class_count_table(counts))
    if group_ids is not None:
        console.print(
            "group-aware split: "
            + ", ".join(f"{s} {len(set(group_ids[indices[s]]))} groups" for s in SPLITS)
        )

    def inputs(split: str) -> tuple[np.ndarray, np.ndarray]:
        return to_model_input(scans.images[indices[split]]), scans.labels[indices[split]]

    return Splits(
        train=(to_model_input(balanced_images), balanced_labels),
        original=(to_model_input(train_images), train_labels),
        val=inputs("val"),
        test=inputs("test"),
        counts=counts,
    )


def _fit_all(
    chosen: list[Candidate],
    splits: Splits,
    epochs: int,
    seed: int,
    patience: int,
    console,  # noqa: ANN001 - rich.console.Console
) -> dict[str, FitResult]:
    """Train every candidate (an ensemble combines its already trained members)."""
    results: dict[str, FitResult] = {}
    with _progress(console) as progress:
        for candidate in chosen:
            if candidate.combines:
                members = [results[name] for name in candidate.combines]
                results[candidate.name] = combine_results(candidate, members)
            else:
                results[candidate.name] = fit_candidate(
                    candidate, splits.train, splits.val, epochs, seed, progress, patience,
                    original=splits.original,
                )  # fmt: skip
    return results


def _as_trained(
    candidate: Candidate,
    result: FitResult,
    rows: list[dict],
    val_probabilities: np.ndarray,
    splits: Splits,
) -> tuple[object, dict, str]:
    """Publish the selected candidate as trained (`--folds 0`): its row with class weights."""
    threshold = next(row for row in rows if row["name"] == candidate.name)["val"]["threshold"]
    weights = choose_class_weights(splits.val[1], val_probabilities)
    row = _report_row(
        candidate, result, splits.val[1], val_probabilities, splits.test, threshold, weights
    )
    return result.model, row, "the selected candidate as trained on the training split"


def _threshold_rule(urgent_recall: float, grouped: bool) -> str:
    return (
        f"class-2 recall >= {urgent_recall} on the held-out scans ('validation' below) in "
        f"{URGENT_RECALL_CONFIDENCE:.0%} of bootstrap resamples of their urgent "
        f"{'patients' if grouped else 'scans'}, and never above {URGENT_THRESHOLD_CEILING}"
    )


def _print_published(
    console,  # noqa: ANN001 - rich.console.Console
    selected: str,
    row: dict,
    folds: int,
    rule: str,
) -> None:
    console.print(candidate_table([row], row["name"], "Published model"))
    console.print(
        f"selected [bold]{selected}[/]; published {row['name']}; urgent threshold "
        f"{row['val']['threshold']:.4f} ({'out-of-fold' if folds else 'validation'} class-2 "
        f"recall {row['val']['urgent_recall']:.3f}; rule: {rule}); "
        f"test at threshold: recall {row['test']['urgent_recall']:.3f}, "
        f"precision {row['test']['urgent_precision']:.3f}; predicted class: argmax "
        f"of P x {row['val']['class_weights']} (weights chosen on the same held-out scans)"
    )


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
) -> tuple[object, dict, str, tuple]:
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
    held = (labels, crossfit.out_of_fold, groups)
    return crossfit.model, _with_plots(row, result, staging), how, held


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
