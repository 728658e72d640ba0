"""`triage train` for the default recipe, `hog_heads` (trainer.heads), and `triage estimate`.

No split is set aside: every choice (L2 strength, class weights, urgent threshold, study rule)
is made by `fit_recipe` on group folds of the data it is given, so the published model learns
from every patient, and the estimate of how it does on new patients comes from running that
same function inside an outer group cross-validation (`nested_estimate`), never from scores
that a choice was made on. The nested estimate of the full recipe (3 deals of the patients)
takes a few minutes; `triage estimate` records it under trainer/estimates/ (keyed by the data
fingerprint, the recipe and its settings) and `triage train` reuses it when it matches;
otherwise `triage train` runs one deal itself (still nested, a wider spread between deals is
then not in the range).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from schemas.model_card import ExpectedUnseen, ModelCard
from trainer import heads as H
from trainer.balance import class_counts
from trainer.report import evaluate, plot_confusion

ESTIMATES_DIR = Path(__file__).parent / "estimates"
QUICK_SEEDS = (0,)


def estimate_key(fingerprint: str, grouped: bool, target_recall: float, folds: int) -> str:
    """File name of a stored nested estimate: data, recipe (and version), its settings."""
    return (
        f"{fingerprint[:16]}-{H.RECIPE}-v{H.RECIPE_VERSION}-r{target_recall:g}-k{folds}"
        f"{'-grouped' if grouped else ''}.json"
    )


def stored_estimate(
    fingerprint: str, grouped: bool, target_recall: float, folds: int, places: list[Path]
) -> dict | None:
    """A recorded nested estimate that matches, from the first place that has one."""
    name = estimate_key(fingerprint, grouped, target_recall, folds)
    for place in places:
        path = Path(place) / name
        if path.is_file():
            record = json.loads(path.read_text())
            if record.get("data_fingerprint") == fingerprint:
                record["path"] = _shown(path)
                return record
    return None


def _shown(path: Path) -> str:
    """The path relative to the repository when it lies inside it."""
    try:
        return str(path.resolve().relative_to(ESTIMATES_DIR.parent.parent))
    except ValueError:
        return str(path)


def compute_estimate(
    data: H.Features,
    fingerprint: str,
    target_recall: float,
    folds: int,
    seeds: tuple[int, ...] = H.OUTER_SEEDS,
) -> dict:
    """The nested estimate of the recipe as `triage train` runs it (`folds` heads, or one
    refitted head for 0), as a record that can be stored."""
    started = time.perf_counter()
    unseen, _ = H.nested_estimate(
        data, target_recall, seeds=seeds, folds=folds or H.INNER_FOLDS, refit=folds == 0
    )
    grouped = data.groups is not None
    units = (
        "patient groups (pseudo-cases joined where they share a near-identical slice)"
        if grouped
        else "scans"
    )
    basis = (
        f"nested cross-validation: {len(seeds)} deal(s) of the {units} into "
        f"{H.OUTER_FOLDS} outer folds; on each 4/5 the whole recipe (L2 strength, class "
        "weights, urgent threshold, study rule) was chosen by its own inner group folds and "
        f"scored on the held-out fifth; range: {H.INTERVAL:.0%} interval of "
        f"{H.RESAMPLES} draws per deal of {H.UNSEEN_PATIENTS if grouped else H.UNSEEN_SLICES} "
        f"{'patients' if grouped else 'scans'} (with replacement) from the held-out "
        "predictions, all deals pooled"
    )
    return {
        "data_fingerprint": fingerprint,
        "recipe": f"{H.RECIPE} v{H.RECIPE_VERSION}",
        "target_recall": target_recall,
        "folds": folds,
        "grouped": grouped,
        "seeds": list(seeds),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "basis": basis,
        "expected_unseen": unseen,
    }


def as_expected_unseen(record: dict, stored: bool) -> ExpectedUnseen:
    unseen = record["expected_unseen"]
    basis = record["basis"] + (
        f" (recorded by `triage estimate`, {record['path']})" if stored else ""
    )
    details = {key: unseen[key] for key in ("per_deal", "study") if key in unseen} | {
        "seconds": record["seconds"],
        "seeds": record["seeds"],
    }
    return ExpectedUnseen(
        macro_f1=unseen["macro_f1"],
        urgent_recall=unseen["urgent_recall"],
        urgent_precision=unseen["urgent_precision"],
        basis=basis,
        nested=True,
        confidence=H.INTERVAL,
        patients=H.UNSEEN_PATIENTS if record["grouped"] else H.UNSEEN_SLICES,
        unit="patients" if record["grouped"] else "scans",
        meets_target=unseen["meets_target"],
        details=details,
    )


def joined_groups(
    images: np.ndarray,
    group_ids: np.ndarray | None,
    console,  # noqa: ANN001 - rich.console.Console
) -> np.ndarray | None:
    """The patient groups the recipe and its estimate use: the given ones, joined where two
    share a near-identical slice (trainer.heads.merge_near_twins)."""
    if group_ids is None:
        return None
    joined = H.merge_near_twins(images, group_ids)
    if joined is None:
        console.print(
            "patient groups kept as given: joining near-identical slices would merge most of "
            "them (the scans look alike everywhere)"
        )
        return group_ids
    console.print(
        f"{len(np.unique(group_ids))} patient groups given; {len(np.unique(joined))} after "
        f"joining groups that share a slice with pixel correlation >= {H.TWIN_CORRELATION}"
    )
    return joined


def run_heads_training(
    scans,  # noqa: ANN001 - trainer.data.ScanSet
    group_ids: np.ndarray | None,
    out: Path,
    seed: int,
    folds: int,
    urgent_recall: float,
    console,  # noqa: ANN001 - rich.console.Console
    started: float,
    estimate_places: list[Path] | None = None,
) -> Path:
    """Fit the recipe on every scan, attach its nested estimate, publish."""
    from trainer.fit import configure_tensorflow
    from trainer.publish import publish, reserve_version

    configure_tensorflow()
    labels = np.asarray(scans.labels).astype(int)
    fingerprint = scans.fingerprint()
    joined = joined_groups(scans.images, group_ids, console)
    data = H.scan_features(scans.images, labels, joined, studies=group_ids)
    counts = {"all": class_counts(labels)}
    console.print(f"{H.RECIPE}: {len(labels)} scans {counts['all']}")
    places = [*(estimate_places or []), Path(out), ESTIMATES_DIR]
    record, stored = _nested_record(
        data, fingerprint, group_ids is not None, urgent_recall, folds, places, console
    )
    unseen = as_expected_unseen(record, stored)
    recipe = H.fit_recipe(data, urgent_recall, folds or H.INNER_FOLDS, seed, refit=folds == 0)
    serving = recipe.serving_heads(data.real.shape[1])
    model = H.heads_model(serving, name=f"{H.RECIPE}_x{len(recipe.heads)}")
    version, staging = reserve_version(Path(out), fingerprint)
    val = evaluate(labels, recipe.out_of_fold, recipe.threshold, recipe.class_weights)
    plot_confusion(val["confusion_matrix"], staging / "confusion_out_of_fold.png", "out-of-fold")
    card = _heads_card(
        version, fingerprint, recipe, _heads_row(recipe, val), record, urgent_recall,
        _heads_how(recipe, len(serving), folds, group_ids is not None),
        _heads_rule(urgent_recall, group_ids is not None),
    )  # fmt: skip
    card.class_counts, card.synthetic_data = counts, scans.synthetic
    card.metrics.update(folds=folds, split_seed=seed)
    card.expected_unseen = unseen
    card.training_seconds = round(time.perf_counter() - started, 1)
    published = publish(model, staging, card)
    print_summary(console, card)
    console.print(f"published {published} ({card.training_seconds:.0f} s); CURRENT -> {version}")
    return published


def _nested_record(
    data: H.Features,
    fingerprint: str,
    grouped: bool,
    urgent_recall: float,
    folds: int,
    places: list[Path],
    console,  # noqa: ANN001 - rich.console.Console
) -> tuple[dict, bool]:
    """The recorded nested estimate that matches (and True), or one deal run now (and False)."""
    record = stored_estimate(fingerprint, grouped, urgent_recall, folds, places)
    if record is not None:
        return record, True
    console.print(
        "no recorded nested estimate for this data and recipe: running one deal of the "
        "nested cross-validation (`triage estimate` records three) ..."
    )
    return compute_estimate(data, fingerprint, urgent_recall, folds, seeds=QUICK_SEEDS), False


def _heads_row(recipe: H.Recipe, val: dict) -> dict:
    """The published recipe's candidate-table row, scored on its out-of-fold predictions."""
    return {
        "name": f"{H.RECIPE}_x{len(recipe.heads)}",
        "description": "fixed HOG + intensity-histogram trunk, linear heads (C by inner "
        "group folds)" + (", mirrored at test time" if recipe.flip else ""),
        "baseline": False,
        "epochs": 0,
        "seconds": round(recipe.seconds, 1),
        "val": val,
        "selection": recipe.selection,
    }


def _heads_how(recipe: H.Recipe, serving_count: int, folds: int, grouped: bool) -> str:
    """The card's sentence on how the published model was made."""
    heads_count = len(recipe.heads)
    return (
        f"fixed feature trunk and {serving_count} linear softmax heads averaged in one Keras model: "
        + (
            f"{heads_count} heads cross-fitted over {heads_count} folds of all "
            f"{'patient groups' if grouped else 'scans'}"
            + (" (each with its mirror)" if recipe.flip else "")
            if folds
            else "one head fitted on every scan"
        )
        + f"; L2 strength C={recipe.c:g} chosen by out-of-fold macro F1 {recipe.selection}; "
        "class weights, urgent threshold and study rule chosen on the same out-of-fold scores"
    )


def _heads_rule(urgent_recall: float, grouped: bool) -> str:
    """The card's sentence on how the urgent threshold was chosen."""
    return (
        f"urgent recall >= {urgent_recall} at the low end ({(1 - H.INTERVAL) / 2:.0%}) of "
        f"resamples of the urgent {'patients' if grouped else 'scans'} a fresh set "
        f"of ~{H.UNSEEN_PATIENTS if grouped else H.UNSEEN_SLICES} would hold, on "
        "the out-of-fold scores (no ceiling)"
    )


def _heads_card(
    version: str,
    fingerprint: str,
    recipe: H.Recipe,
    row: dict,
    record: dict,
    urgent_recall: float,
    how: str,
    rule: str,
) -> ModelCard:
    """The card of the published recipe (the caller adds counts, timing and the estimate)."""
    from trainer.publish import library_versions

    first = record["expected_unseen"]["per_deal"][0]
    return ModelCard(
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        urgent_threshold=recipe.threshold,
        urgent_target_recall=urgent_recall,
        urgent_threshold_rule=rule,
        class_weights=recipe.class_weights,
        selected_candidate=H.RECIPE,
        published_model=how,
        data_fingerprint=fingerprint,
        candidates=[row],
        metrics={
            "val": row["val"],
            "nested": record["expected_unseen"]["per_deal"],
            "nested_first_deal": {k: v for k, v in first.items() if k != "choices"},
        },
        library_versions=library_versions(),
        study_rule=recipe.study_rule,
    )


def print_summary(console, card: ModelCard) -> None:  # noqa: ANN001
    """The lines a person reads last: operating point, study rule, expected on new patients."""
    val = card.metrics.get("val", {})
    console.print(
        f"urgent threshold {card.urgent_threshold:.4f}: out-of-fold urgent recall "
        f"{val.get('urgent_recall', float('nan')):.3f}, precision "
        f"{val.get('urgent_precision', float('nan')):.3f}; predicted class: argmax of P x "
        f"{card.class_weights}"
    )
    if card.study_rule is not None:
        m = card.study_rule.metrics
        console.print(
            f"study rule: top-{card.study_rule.top_k} mean P(urgent) >= "
            f"{card.study_rule.threshold:.4f}; out-of-fold studies: recall "
            f"{m.get('study_recall', float('nan')):.3f}, precision "
            f"{m.get('study_precision', float('nan')):.3f} ({m.get('studies')} studies)"
        )
    for line in expected_unseen_lines(card):
        console.print(line, markup=False, highlight=False)


def expected_unseen_lines(card: ModelCard) -> list[str]:
    unseen = card.expected_unseen
    if unseen is None:
        return ["expected on new patients: not estimated"]
    lines = [
        f"expected on ~{unseen.patients} new {unseen.unit} "
        f"({unseen.confidence:.0%} range): " + H.describe_range(unseen.model_dump()),
        f"  basis: {unseen.basis}",
    ]
    if unseen.meets_target is False:
        lines.append(
            f"  WARNING: the low end of urgent recall ({unseen.urgent_recall.low:.2f}) is below "
            f"the target {card.urgent_target_recall}: the data do not support that target at "
            "this threshold rule"
        )
    if not unseen.nested:
        lines.append("  (not a nested estimate: see its basis)")
    return lines
