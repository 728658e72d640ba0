"""The training run: load -> split -> balance -> candidates -> select -> threshold -> publish.

Order matters for honesty: candidates are compared and the urgent threshold chosen on the
validation split only; the test split is scored after both are fixed, for the report.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from schemas.model_card import URGENT_CLASS, ModelCard
from schemas.scans import to_model_input
from trainer.balance import balance_by_augmentation, class_counts
from trainer.candidates import select_candidates
from trainer.data import (
    SPLITS,
    ScanSet,
    load_groups,
    load_scans,
    scan_set_from_arrays,
    split_indices,
)
from trainer.fit import combine_results, configure_tensorflow, fit_candidate, predict_proba
from trainer.publish import library_versions, new_version, publish, staging_dir
from trainer.report import (
    candidate_table,
    choose_urgent_threshold,
    class_count_table,
    evaluate,
    plot_confusion,
    plot_history,
    select_best,
)

DEFAULT_EPOCHS = 60
# The validation split holds about 20 patients' urgent slices: when a model is very sure of
# them, the threshold reaching the target recall there climbs high and misses urgent scans of
# other patients. Any scan the model finds more likely urgent than not is flagged regardless.
URGENT_THRESHOLD_CEILING = 0.5


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
    console=None,  # noqa: ANN001 - rich.console.Console
) -> Path:
    """Train, compare and publish; returns the published model directory."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from schemas.settings import get_settings

    started = time.perf_counter()
    console = console or Console()
    if not console.is_terminal:  # logs and pipes: keep the candidate table on one line a row
        console.width = max(console.width, 170)
    settings = get_settings()
    out = Path(out) if out is not None else settings.resolved_model_dir
    urgent_recall = urgent_recall if urgent_recall is not None else settings.urgent_recall
    chosen = select_candidates(candidates)
    scans = _as_scan_set(data)
    if groups is not None and not group_column:
        raise ValueError("--groups needs --group-column naming the group column")
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

    results, rows = {}, []
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn())
    columns += (TimeElapsedColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console) as progress:
        for candidate in chosen:
            if candidate.combines:
                members = [results[name] for name in candidate.combines]
                results[candidate.name] = combine_results(candidate, members)
                continue
            results[candidate.name] = fit_candidate(
                candidate, train, val, epochs, seed, progress, patience
            )

    # selection and the urgent threshold see validation data only
    val_probabilities = {name: predict_proba(r.model, val[0]) for name, r in results.items()}
    val_reports = {name: evaluate(val[1], p) for name, p in val_probabilities.items()}
    selected = select_best({name: report["macro_f1"] for name, report in val_reports.items()})
    threshold = choose_urgent_threshold(
        val[1],
        val_probabilities[selected][:, URGENT_CLASS],
        urgent_recall,
        URGENT_THRESHOLD_CEILING,
    )

    fingerprint = scans.fingerprint()
    version = new_version(fingerprint)
    staging = staging_dir(out, version)
    for candidate in chosen:
        name, result = candidate.name, results[candidate.name]
        test_probabilities = predict_proba(result.model, test[0])
        own_threshold = choose_urgent_threshold(
            val[1],
            val_probabilities[name][:, URGENT_CLASS],
            urgent_recall,
            URGENT_THRESHOLD_CEILING,
        )
        rows.append(
            {
                "name": name,
                "description": candidate.description,
                "baseline": candidate.baseline,
                "epochs": max(len(h.get("loss", [])) for h in result.histories),
                "seconds": round(result.seconds, 1),
                "val": evaluate(val[1], val_probabilities[name], own_threshold),
                "test": evaluate(test[1], test_probabilities, own_threshold),
            }
        )
        plot_history(result.histories, staging / f"curves_{name}.png", name)
        plot_confusion(
            rows[-1]["test"]["confusion_matrix"],
            staging / f"confusion_{name}.png",
            f"{name} (test)",
        )
    console.print(candidate_table(rows, selected))
    best = next(row for row in rows if row["name"] == selected)
    console.print(
        f"selected [bold]{selected}[/]; urgent threshold {threshold:.4f} "
        f"(validation class-2 recall {best['val']['urgent_recall']:.3f} >= {urgent_recall}); "
        f"test at threshold: recall {best['test']['urgent_recall']:.3f}, "
        f"precision {best['test']['urgent_precision']:.3f}"
    )
    card = ModelCard(
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        urgent_threshold=threshold,
        urgent_target_recall=urgent_recall,
        selected_candidate=selected,
        data_fingerprint=fingerprint,
        class_counts=counts,
        candidates=rows,
        metrics={"val": best["val"], "test": best["test"], "split_seed": seed},
        training_seconds=round(time.perf_counter() - started, 1),
        library_versions=library_versions(),
        synthetic_data=scans.synthetic,
    )
    published = publish(results[selected].model, staging, card)
    console.print(f"published {published} ({card.training_seconds:.0f} s); CURRENT -> {version}")
    return published


def _as_scan_set(data: str | Path | ScanSet | tuple[np.ndarray, np.ndarray]) -> ScanSet:
    if isinstance(data, ScanSet):
        return data
    if isinstance(data, tuple):
        return scan_set_from_arrays(*data)
    return load_scans(data, require_labels=True)
