"""What new patients should show: the pipeline re-run inside two validation designs.

- nested (group-aware): for each fold of the patients, the whole pipeline (cross-fit every
  candidate on the other folds, choose, select) runs without it, and its winner (its fold
  models merged, as published) scores it.
- temporal: the pipeline runs on the earlier patients of each class (by file number) and its
  winner scores the later ones, as a hospital meets them.
Which candidate wins is part of what is estimated; no choice sees the scans that score it.
Each design's range: RESAMPLES draws of UNSEEN_PATIENTS patients (with replacement) from its
held-out predictions, the INTERVAL range; studies likewise. The card states, target by target,
the pessimistic design's range, and warns where a range misses a target (TARGETS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from imaging.canonical import to_model_input
from schemas.model_card import URGENT_CLASS, EstimateRange, ExpectedUnseen, predicted_classes
from trainer.choices import INTERVAL, RESAMPLES, UNSEEN_PATIENTS, study_labels_and_scores
from trainer.crossfit import FoldFits, fold_of_scans
from trainer.fit import predict_proba
from trainer.networks import NUM_CLASSES
from trainer.pipeline import run_pipeline

TEMPORAL_SHARE = 0.3  # the latest share of each class's patients that the temporal design scores
# targets: (key, bound, "low" must be >= bound | "high" must be <= bound)
TARGETS = (
    ("macro_f1", 0.70, "low"),
    ("urgent_recall", 0.95, "low"),
    ("urgent_precision", 0.75, "low"),
    ("study_urgent_flagged", 0.95, "low"),
    ("study_healthy_flagged", 0.30, "high"),
)
KEYS = tuple(key for key, _, _ in TARGETS)


@dataclass
class Scored:
    """Held-out predictions of one design: each scan scored by a pipeline that never saw it."""

    design: str
    labels: list = field(default_factory=list)
    units: list = field(default_factory=list)  # patient groups (the bootstrap unit)
    predicted: list = field(default_factory=list)
    flagged: list = field(default_factory=list)
    studies: dict = field(default_factory=dict)  # study -> (label, flagged)
    winners: list = field(default_factory=list)
    candidates: list = field(default_factory=list)  # per pipeline run: its candidate rows
    held_out: dict = field(default_factory=dict)  # candidate -> (labels, predicted, flagged)

    def add(self, outcome, images, labels, units, studies) -> None:  # noqa: ANN001
        """Score held-out scans with a pipeline outcome's winner (its fold models merged, as
        published) and its choices; every other candidate too, at its own choices."""
        model = outcome.selected.build_model()
        probabilities = predict_proba(model, to_model_input(images))
        choices = outcome.choices
        self.labels += list(labels)
        self.units += list(units)
        self.predicted += list(predicted_classes(probabilities, choices.class_weights))
        self.flagged += list(probabilities[:, URGENT_CLASS] >= choices.threshold)
        rule = choices.study_rule
        if rule is not None and studies is not None:
            names, study_label, score = study_labels_and_scores(
                labels, probabilities[:, URGENT_CLASS], studies, rule.top_k
            )
            for name, label, value in zip(names, study_label, score, strict=True):
                self.studies[str(name)] = (int(label), bool(value >= rule.threshold))
        self.winners.append(outcome.selected.name)
        self.candidates.append(outcome.rows)
        for name, item in outcome.fitted.items():  # every candidate on the same held-out scans
            own = probabilities if name == outcome.selected.name else None
            if own is None:
                own = predict_proba(item.build_model(), to_model_input(images))
            mine = outcome.every_choice[name]
            kept = self.held_out.setdefault(name, ([], [], []))
            kept[0].extend(labels)
            kept[1].extend(predicted_classes(own, mine.class_weights))
            kept[2].extend(own[:, URGENT_CLASS] >= mine.threshold)


def nested(fits: FoldFits, candidates, with_ensemble, groups, studies, target) -> Scored:  # noqa: ANN001
    """Each fold scored by the pipeline run on the other folds."""
    scored = Scored("nested group-aware")
    for fold in fits.folds:
        others = [f for f in fits.folds if f != fold]
        outcome = run_pipeline(fits, candidates, with_ensemble, others, groups, studies, target)
        held = fits.fold == fold
        scored.add(
            outcome, fits.images[held], fits.labels[held], np.asarray(groups)[held],
            None if studies is None else np.asarray(studies)[held],
        )  # fmt: skip
    return scored


def later_patients(labels: np.ndarray, groups: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """Mask of the scans of the latest TEMPORAL_SHARE of each class's patient groups, a group
    dated by its lowest file number and counted for its majority class."""
    names, inverse = np.unique(np.asarray(groups), return_inverse=True)
    first = np.full(len(names), np.inf)
    np.minimum.at(first, inverse, np.asarray(numbers, dtype=float))
    counts = np.zeros((len(names), NUM_CLASSES), int)
    np.add.at(counts, (inverse, np.asarray(labels).astype(int)), 1)
    majority = counts.argmax(axis=1)
    later = np.zeros(len(names), bool)
    for label in range(NUM_CLASSES):
        members = np.flatnonzero(majority == label)
        ordered = members[np.argsort(first[members], kind="stable")]
        count = int(round(TEMPORAL_SHARE * len(ordered)))
        if count:
            later[ordered[len(ordered) - count :]] = True
    return later[inverse]


def temporal(fits: FoldFits, candidates, with_ensemble, groups, studies, target, numbers) -> Scored:  # noqa: ANN001
    """The pipeline on the earlier patients of each class, scored on the later ones."""
    later = later_patients(fits.labels, groups, numbers)
    early = ~later
    groups = np.asarray(groups)
    early_fits = FoldFits(
        fits.images[early], fits.labels[early],
        fold_of_scans(fits.labels[early], groups[early], len(fits.folds), fits.seed + 7),
        fits.seed + 7, fits.epochs, fits.progress,
    )  # fmt: skip
    early_studies = None if studies is None else np.asarray(studies)[early]
    outcome = run_pipeline(
        early_fits, candidates, with_ensemble, early_fits.folds, groups[early], early_studies,
        target,
    )  # fmt: skip
    scored = Scored("temporal (earlier patients -> later)")
    scored.add(
        outcome, fits.images[later], fits.labels[later], groups[later],
        None if studies is None else np.asarray(studies)[later],
    )  # fmt: skip
    return scored


def _macro_f1(confusion: np.ndarray) -> np.ndarray:
    """Macro F1 of confusion matrices (..., 3, 3), rows true (classes absent count as 0)."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    denominator = confusion.sum(axis=-1) + confusion.sum(axis=-2)
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0).mean(axis=-1)


def _range(samples: np.ndarray, point: float) -> dict:
    low, high = np.quantile(samples, [(1 - INTERVAL) / 2, 1 - (1 - INTERVAL) / 2])
    return {
        "estimate": round(float(point), 3),
        "low": round(float(low), 3),
        "high": round(float(high), 3),
    }


def summarise(scored: Scored) -> dict:
    """Point estimates and ranges of one design, slice and study level."""
    rng = np.random.default_rng(0)
    labels, predicted = np.asarray(scored.labels, int), np.asarray(scored.predicted, int)
    flagged = np.asarray(scored.flagged, bool)
    names, unit = np.unique(np.asarray(scored.units).astype(str), return_inverse=True)
    per_unit = np.zeros((len(names), NUM_CLASSES, NUM_CLASSES))
    np.add.at(per_unit, (unit, labels, predicted), 1)
    urgent = labels == URGENT_CLASS
    tp = np.bincount(unit, weights=flagged & urgent, minlength=len(names))
    positives = np.bincount(unit, weights=urgent, minlength=len(names))
    flags = np.bincount(unit, weights=flagged, minlength=len(names))
    draws = rng.multinomial(UNSEEN_PATIENTS, np.full(len(names), 1 / len(names)), RESAMPLES)
    result = {
        "design": scored.design,
        "scans": len(labels),
        "patients": len(names),
        "winners": scored.winners,
        "macro_f1": _range(
            _macro_f1(np.einsum("bu,uij->bij", draws, per_unit)), _macro_f1(per_unit.sum(0))
        ),
        "urgent_recall": _range(
            (draws @ tp) / np.maximum(draws @ positives, 1), tp.sum() / max(positives.sum(), 1)
        ),
        "urgent_precision": _range(
            (draws @ tp) / np.maximum(draws @ flags, 1), tp.sum() / max(flags.sum(), 1)
        ),
        "healthy_slices_flagged": round(float(flagged[labels == 0].mean()), 3)
        if (labels == 0).any()
        else None,
        "candidates": _mean_rows(scored.candidates),
        "held_out_candidates": _held_out_rows(scored.held_out),
    }
    result.update(_study_ranges(scored.studies, rng))
    return result


def _study_ranges(studies: dict, rng: np.random.Generator) -> dict:
    """Share of urgent studies flagged and of healthy studies flagged, with ranges."""
    if not studies:
        return {}
    values = np.array(list(studies.values()))
    label, flagged = values[:, 0], values[:, 1].astype(bool)
    draws = rng.multinomial(UNSEEN_PATIENTS, np.full(len(label), 1 / len(label)), RESAMPLES)
    out = {"studies": len(label)}
    for key, cls in (("study_urgent_flagged", URGENT_CLASS), ("study_healthy_flagged", 0)):
        member = label == cls
        if member.any():
            share = (draws @ (flagged & member)) / np.maximum(draws @ member, 1)
            out[key] = _range(share, flagged[member].mean())
    return out


def _mean_rows(runs: list[list[dict]]) -> list[dict]:
    """Each candidate's out-of-fold numbers, averaged over the pipeline runs of a design."""
    rows = []
    for name in [row["name"] for row in runs[0]]:
        mine = [row for run in runs for row in run if row["name"] == name]
        rows.append(
            {"name": name}
            | {
                k: round(float(np.mean([r[k] for r in mine])), 3)
                for k in ("macro_f1", "urgent_recall", "urgent_precision")
            }
        )
    return rows


def _held_out_rows(held_out: dict) -> list[dict]:
    """Each candidate's pooled numbers on the design's held-out scans, at its own choices."""
    rows = []
    for name, (labels, predicted, flagged) in held_out.items():
        labels, flagged = np.asarray(labels, int), np.asarray(flagged, bool)
        confusion = np.zeros((NUM_CLASSES, NUM_CLASSES))
        np.add.at(confusion, (labels, np.asarray(predicted, int)), 1)
        urgent = labels == URGENT_CLASS
        hits = int((flagged & urgent).sum())
        rows.append(
            {"name": name, "macro_f1": round(float(_macro_f1(confusion)), 3),
             "urgent_recall": round(hits / max(int(urgent.sum()), 1), 3),
             "urgent_precision": round(hits / max(int(flagged.sum()), 1), 3)}
        )  # fmt: skip
    return rows


def expected_unseen(designs: list[dict], basis: str) -> ExpectedUnseen:
    """The card's promise, target by target the pessimistic design's range (the lower low end
    where a target is a floor, the higher high end where it is a ceiling), which design each
    came from, every design kept, and a warning per missed target. `design` names the design
    that gave the macro F1 range."""
    worst = {key: _worst(designs, key, side) for key, _, side in TARGETS}
    worst = {key: design for key, design in worst.items() if design is not None}
    warnings = []
    for key, bound, side in TARGETS:
        if key not in worst:
            continue
        stated = worst[key][key]
        if (side == "low" and stated[side] < bound) or (side == "high" and stated[side] > bound):
            warnings.append(
                f"{key.replace('_', ' ')}: the {worst[key]['design']} range "
                f"({stated['low']:.2f}-{stated['high']:.2f}) misses the target "
                f"{'>=' if side == 'low' else '<='} {bound}"
            )
    sources = ", ".join(f"{key} from {design['design']}" for key, design in worst.items())
    return ExpectedUnseen(
        macro_f1=EstimateRange(**worst["macro_f1"]["macro_f1"]),
        urgent_recall=EstimateRange(**worst["urgent_recall"]["urgent_recall"]),
        urgent_precision=EstimateRange(**worst["urgent_precision"]["urgent_precision"]),
        study_urgent_flagged=_optional_range(_stated(worst, "study_urgent_flagged")),
        study_healthy_flagged=_optional_range(_stated(worst, "study_healthy_flagged")),
        basis=f"the pessimistic of {len(designs)} design(s), target by target ({sources}); {basis}",
        design=worst["macro_f1"]["design"],
        nested=True,
        confidence=INTERVAL,
        patients=UNSEEN_PATIENTS,
        unit="patients",
        meets_target=not any(w.startswith("urgent recall") for w in warnings),
        designs={d["design"]: d for d in designs},
        warnings=warnings,
    )


def _worst(designs: list[dict], key: str, side: str) -> dict | None:
    """The design whose range for `key` is worse for a target on that `side`."""
    having = [design for design in designs if design.get(key)]
    if not having:
        return None
    pick = min if side == "low" else max
    return pick(having, key=lambda design: design[key][side])


def _stated(worst: dict[str, dict], key: str) -> dict | None:
    return worst[key][key] if key in worst else None


def _optional_range(value: dict | None) -> EstimateRange | None:
    return None if value is None else EstimateRange(**value)
