"""The training run, top to bottom: data and patients -> folds -> (per fold: balanced
training set -> every candidate) -> choices -> selection by out-of-fold macro F1 ->
estimate (recorded, or both validation designs run now) -> publish.

The published model is the selected candidate's fold models merged (mean softmax); its
threshold, class weights and study rule come from its out-of-fold scores. What new patients
should show comes from re-running this same pipeline inside the validation designs
(trainer.estimate), never from the out-of-fold scores a choice was made on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from schemas.model_card import ExpectedUnseen, ModelCard
from trainer import estimate as E
from trainer.balance import class_counts
from trainer.candidates import Candidate, select_candidates
from trainer.crossfit import FoldFits, fold_of_scans
from trainer.data import ScanSet, load_scans, scan_set_from_arrays
from trainer.groups import Patients, patients_of
from trainer.pipeline import Outcome, run_pipeline
from trainer.records import find_record, record_key, record_places, write_record

DEFAULT_FOLDS = 3  # cross-fit folds; 0: a quick 2-fold run without an estimate (demo)


@dataclass
class Run:
    """Everything one training (or estimate) works on."""

    scans: ScanSet
    patients: Patients
    fits: FoldFits
    candidates: list[Candidate]
    with_ensemble: bool
    target: float
    folds: int

    def key(self) -> str:
        names = [c.name for c in self.candidates] + (["ensemble"] if self.with_ensemble else [])
        return record_key(
            self.scans.fingerprint(), names, self.folds, self.fits.epochs, self.target,
            self.patients.given,
        )  # fmt: skip


def prepare(
    data: str | Path | ScanSet | tuple[np.ndarray, np.ndarray],
    groups: str | Path | None,
    group_column: str | None,
    candidates: list[str] | tuple[str, ...] | None,
    folds: int,
    epochs: int | None,
    seed: int,
    target: float,
    console,  # noqa: ANN001 - rich.console.Console
) -> Run:
    """Load the scans and their patients, deal the folds, name the candidates."""
    from trainer.fit import configure_tensorflow

    if folds in (1, 2):  # the nested estimate cross-fits inside all folds but one
        raise ValueError("--folds must be 0 (a quick run without an estimate) or at least 3")
    chosen, with_ensemble = select_candidates(candidates)
    scans = _as_scan_set(data)
    patients = patients_of(scans.images, groups, group_column)
    console.print(patients.describe())
    labels = np.asarray(scans.labels).astype(int)
    fold = fold_of_scans(labels, patients.units, folds or 2, seed)
    configure_tensorflow()
    fits = FoldFits(
        scans.images, labels, fold, seed, epochs,
        lambda text: console.print(f"  training {text}", highlight=False),
    )  # fmt: skip
    return Run(scans, patients, fits, chosen, with_ensemble, target, folds)


def run_training(
    data: str | Path | ScanSet | tuple[np.ndarray, np.ndarray],
    out: str | Path | None = None,
    epochs: int | None = None,
    seed: int = 0,
    candidates: list[str] | tuple[str, ...] | None = None,
    groups: str | Path | None = None,
    group_column: str | None = None,
    urgent_recall: float | None = None,
    folds: int = DEFAULT_FOLDS,
    console=None,  # noqa: ANN001 - rich.console.Console
) -> Path:
    """Train every candidate, select by macro F1, estimate, publish; returns the model dir."""
    from schemas.settings import get_settings
    from trainer.publish import publish, reserve_version
    from trainer.reference import reference_statistics
    from trainer.report import candidate_table, evaluate, plot_confusion

    started = time.perf_counter()
    console = _wide_console(console)
    settings = get_settings()
    out = Path(out) if out is not None else settings.resolved_model_dir
    target = urgent_recall if urgent_recall is not None else settings.urgent_recall
    run = prepare(data, groups, group_column, candidates, folds, epochs, seed, target, console)
    outcome = run_pipeline(
        run.fits, run.candidates, run.with_ensemble, run.fits.folds, run.patients.units,
        run.patients.studies, target,
    )  # fmt: skip
    counts = {"all scans": class_counts(run.fits.labels), **run.fits.counts}
    console.print(candidate_table(outcome.rows, "Candidates (out-of-fold, all patients)"))
    unseen = _expected_unseen(run, data, out, console)
    model = outcome.selected.build_model()
    version, staging = reserve_version(out, run.scans.fingerprint())
    card = _card(version, run, outcome, unseen)
    card.class_counts, card.synthetic_data = counts, run.scans.synthetic
    card.reference = reference_statistics(
        run.scans.images, outcome.selected.out_of_fold, outcome.choices.threshold
    )
    oof = evaluate(run.fits.labels, outcome.selected.out_of_fold, None, card.class_weights)
    plot_confusion(oof["confusion_matrix"], staging / "confusion_out_of_fold.png", "out of fold")
    card.training_seconds = round(time.perf_counter() - started, 1)
    published = publish(model, staging, card)
    for line in summary_lines(card):
        console.print(line, markup=False, highlight=False)
    console.print(f"published {published} ({card.training_seconds:.0f} s); CURRENT -> {version}")
    return published


def estimate_designs(run: Run) -> list[dict]:
    """Both validation designs of the pipeline (temporal only when file numbers are known)."""
    p = run.patients
    args = (run.fits, run.candidates, run.with_ensemble, p.units, p.studies if p.given else None)
    designs = [E.summarise(E.nested(*args, run.target))]
    if p.numbers is not None:
        designs.append(E.summarise(E.temporal(*args, run.target, p.numbers)))
    return designs


def make_record(run: Run) -> dict:
    """A storable estimate: both designs' summaries and how they were made."""
    started = time.perf_counter()
    designs = estimate_designs(run)
    return record_of(run, designs, time.perf_counter() - started)


def record_of(run: Run, designs: list[dict], seconds: float) -> dict:
    """The record of designs computed for `run` (by make_record, or piece by piece)."""
    return {
        "data_fingerprint": run.scans.fingerprint(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "designs": designs,
        "basis": (
            f"the whole pipeline ({len(run.candidates)} candidates"
            f"{' + the ensemble of the best two' if run.with_ensemble else ''}, choices, "
            f"selection by macro F1) re-run on {len(run.fits.folds)} folds: "
            "nested = each fold of the patient groups scored by the pipeline run on the others; "
            f"temporal = the latest {E.TEMPORAL_SHARE:.0%} of each class's patients by file "
            "number scored by the pipeline run on the earlier ones; ranges: 90 % of draws of "
            "50 patients (studies) from the held-out predictions"
        ),
    }


def _expected_unseen(run: Run, data: object, out: Path, console) -> ExpectedUnseen | None:  # noqa: ANN001
    """The recorded estimate that matches, or both designs run now (none with --folds 0)."""
    if not run.folds:
        console.print("--folds 0: quick run, no estimate of new patients")
        return None
    fingerprint = run.scans.fingerprint()
    record = find_record(run.key(), fingerprint, record_places(out, data))
    if record is None:
        console.print("no recorded estimate for this data and settings: running both designs ...")
        record = make_record(run)
        record["path"] = str(write_record(Path(out) / "estimates", run.key(), record))
    unseen = E.expected_unseen(record["designs"], record["basis"])
    unseen.details = {"record": record["path"], "seconds": record["seconds"]}
    return unseen


def _card(version: str, run: Run, outcome: Outcome, unseen: ExpectedUnseen | None) -> ModelCard:
    from trainer.publish import library_versions

    row = next(r for r in outcome.rows if r["selected"])
    choices = outcome.choices
    return ModelCard(
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        urgent_threshold=choices.threshold,
        urgent_target_recall=run.target,
        urgent_threshold_rule=(
            f"urgent recall >= {run.target} at the low end (5 %) of resamples of the urgent "
            "patients a fresh set of ~50 would hold, on the out-of-fold scores"
        ),
        class_weights=choices.class_weights,
        selected_candidate=outcome.selected.name,
        published_model=(
            f"{outcome.selected.name}: its {len(run.fits.folds)} fold models (each trained on "
            f"the balanced scans of the other folds) merged, mean softmax; selected by "
            "out-of-fold macro F1 among the candidates below"
        ),
        data_fingerprint=run.scans.fingerprint(),
        candidates=outcome.rows,
        metrics={"out_of_fold": row, "folds": run.folds, "seed": run.fits.seed},
        library_versions=library_versions(),
        study_rule=choices.study_rule,
        expected_unseen=unseen,
    )


def summary_lines(card: ModelCard) -> list[str]:
    """The lines a person reads last: the selection, the operating point, the promise."""
    row = card.metrics.get("out_of_fold", {})
    lines = [
        f"selected {card.selected_candidate}: out-of-fold macro F1 {row.get('macro_f1', 0):.3f}, "
        f"urgent recall {row.get('urgent_recall', 0):.3f}, precision "
        f"{row.get('urgent_precision', 0):.3f} at threshold {card.urgent_threshold:.4f}"
    ]
    unseen = card.expected_unseen
    if unseen is None:
        return [*lines, "expected on new patients: not estimated"]
    lines.append(
        f"expected on ~{unseen.patients} new patients ({unseen.confidence:.0%} range): {describe(unseen)}"
    )
    lines.append(f"  basis: {unseen.basis}")
    lines += [f"  WARNING: {warning}" for warning in unseen.warnings]
    return lines


def describe(unseen: ExpectedUnseen) -> str:
    """One line: every stated range."""
    parts = []
    for key in (
        "macro_f1",
        "urgent_recall",
        "urgent_precision",
        "study_urgent_flagged",
        "study_healthy_flagged",
    ):
        value = getattr(unseen, key)
        if value is not None:
            parts.append(
                f"{key.replace('_', ' ')} {value.estimate:.2f} ({value.low:.2f}-{value.high:.2f})"
            )
    return ", ".join(parts)


def _wide_console(console):  # noqa: ANN001, ANN202 - rich.console.Console
    from rich.console import Console

    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 170)
    return console


def _as_scan_set(data: str | Path | ScanSet | tuple[np.ndarray, np.ndarray]) -> ScanSet:
    if isinstance(data, ScanSet):
        return data
    if isinstance(data, tuple):
        return scan_set_from_arrays(*data)
    return load_scans(data, require_labels=True)
