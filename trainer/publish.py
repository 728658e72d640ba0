"""Publish a trained model as a versioned directory and point CURRENT at it."""

from __future__ import annotations

import os
import platform
import shutil
import time
from pathlib import Path

from schemas.model_card import MODEL_FILE, ModelCard, set_current, write_card


def reserve_version(model_root: Path, fingerprint: str) -> tuple[str, Path]:
    """A free, sortable version name (UTC time + data fingerprint) and its staging directory.

    Two trainings of the same data in the same second (a reused nested estimate makes a
    training that fast) get `-2`, `-3` ... rather than one refusing to publish.
    """
    base = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{fingerprint[:6]}"
    root = Path(model_root)
    for attempt in range(1, 1000):
        version = base if attempt == 1 else f"{base}-{attempt}"
        if (root / version).exists():
            continue
        try:
            return version, staging_dir(root, version)
        except FileExistsError:  # another trainer is staging this name right now
            continue
    raise FileExistsError(f"no free version name under {root} for {base}")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that produced (and must load) the model."""
    import keras
    import numpy
    import sklearn
    import tensorflow

    return {
        "python": platform.python_version(),
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
    }


def staging_dir(model_root: Path, version: str) -> Path:
    """A hidden directory to write a version into before it appears under its name."""
    path = Path(model_root) / f".staging-{version}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def publish(model, staging: Path, card: ModelCard) -> Path:  # noqa: ANN001 - keras.Model
    """Save model + card (+ card.md) into `staging`, rename it to its version, set CURRENT."""
    model.save(staging / MODEL_FILE)
    write_card(staging, card)
    (staging / "card.md").write_text(card_markdown(card))
    target = staging.parent / card.version
    if target.exists():
        shutil.rmtree(staging)
        raise FileExistsError(f"{target} already exists; not overwriting a published model")
    os.replace(staging, target)
    set_current(staging.parent, card.version)
    return target


def card_markdown(card: ModelCard) -> str:
    """The model card for people."""
    lines = [
        *_summary_markdown(card),
        *_expected_unseen_markdown(card),
        *_study_rule_markdown(card),
        *_candidates_markdown(card),
        "",
        "## Class counts (before and after balancing each fold's training scans)",
        "",
    ]
    lines += [f"- {stage}: {counts}" for stage, counts in card.class_counts.items()]
    if card.reference:
        lines += ["", "## Reference statistics for drift monitoring", ""]
        lines += [f"- {key}: {value}" for key, value in card.reference.items()]
    lines += ["", "## Libraries", ""]
    lines += [f"- {name} {version}" for name, version in card.library_versions.items()]
    lines += ["", "Plot: `confusion_out_of_fold.png` (the selected candidate, out of fold)."]
    return "\n".join([*lines, ""])


def _summary_markdown(card: ModelCard) -> list[str]:
    """The title and the bullet list: recipe, classes, input, urgent flag, data, timing."""
    return [
        f"# Lung-scan triage model {card.version}",
        "",
        "**Trained on SYNTHETIC phantom scans: not for clinical use.**"
        if card.synthetic_data
        else "",
        f"- Selected candidate: `{card.selected_candidate}` (highest out-of-fold macro F1 of "
        "the compared candidates)",
        f"- Published model: {card.published_model}" if card.published_model else "",
        f"- Classes: {', '.join(f'{i} {name}' for i, name in enumerate(card.classes))}",
        f"- Input: {card.input_shape}; preprocessing: {card.preprocessing}",
        f"- Urgent flag: P(class 2) >= {card.urgent_threshold:.4f}: "
        + (card.urgent_threshold_rule or f"class-2 recall >= {card.urgent_target_recall:.2f}"),
        f"- Predicted class: argmax of P x class weights {card.class_weights} (chosen on the "
        "out-of-fold scores); the urgent flag above does not depend on it",
        f"- Data fingerprint (sha256 of images + labels): `{card.data_fingerprint}`",
        f"- Training time: {card.training_seconds:.0f} s",
        "",
    ]


def _candidates_markdown(card: ModelCard) -> list[str]:
    """The compared candidates: out-of-fold on all patients, and per validation design."""
    designs = card.expected_unseen.designs if card.expected_unseen is not None else {}
    header = "| candidate | macro F1 | urgent recall | urgent precision |"
    header += "".join(f" {name}: macro F1 / recall / precision |" for name in designs)
    lines = ["", "## Candidates", "", header, "| --- |" + " ---: |" * (3 + len(designs))]
    for row in card.candidates:
        cells = [
            f"{'**' if row.get('selected') else ''}{row['name']}"
            f"{'** (selected)' if row.get('selected') else ''}",
            f"{row['macro_f1']:.3f}", f"{row['urgent_recall']:.3f}",
            f"{row['urgent_precision']:.3f}",
        ]  # fmt: skip
        for design in designs.values():
            found = next(
                (r for r in design.get("candidates", []) if r["name"] == row["name"]), None
            )
            cells.append(
                "-" if found is None else
                f"{found['macro_f1']:.3f} / {found['urgent_recall']:.3f} / {found['urgent_precision']:.3f}"
            )  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "First columns: out of fold on all patients; per design: on that design's held-out "
        "scans (older records: out of fold inside the design's pipeline runs); each at the "
        "candidate's own threshold and class weights.",
    ]
    return lines


def _expected_unseen_markdown(card: ModelCard) -> list[str]:
    """What new patients should show: the ranges, their basis, the warnings."""
    unseen = card.expected_unseen
    if unseen is None:
        return ["## Expected on new patients", "", "Not estimated.", ""]
    lines = [
        "## Expected on new patients",
        "",
        f"What a fresh set of about {unseen.patients} new {unseen.unit} should show "
        f"({unseen.confidence:.0%} range; from the {unseen.design} design):",
        "",
        "| | estimate | low | high |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, label in (
        ("macro_f1", "slice macro F1 (predicted class)"),
        ("urgent_recall", "slice urgent recall (flag)"),
        ("urgent_precision", "slice urgent precision (flag)"),
        ("study_urgent_flagged", "urgent studies reaching the worklist"),
        ("study_healthy_flagged", "healthy studies flagged"),
    ):
        value = getattr(unseen, key)
        if value is not None:
            lines.append(f"| {label} | {value.estimate:.3f} | {value.low:.3f} | {value.high:.3f} |")
    lines += ["", f"Basis: {unseen.basis}.", ""]
    lines += [f"**Warning: {warning}.**" for warning in unseen.warnings]
    lines += [
        "",
        "Other hospitals: not measured here. Training augments window level and width, "
        "brightness, contrast, noise, field of view and padding bars, and a test checks that "
        "predictions barely move under such changes; a shift in disease look or scanner "
        "physics is not covered by any range above.",
        "",
    ]
    return lines


def _study_rule_markdown(card: ModelCard) -> list[str]:
    rule = card.study_rule
    if rule is None:
        return []
    metrics = rule.metrics
    return [
        "## Study rule",
        "",
        f"- {rule.description}",
        f"- On the out-of-fold studies: recall {metrics.get('study_recall', float('nan')):.3f}, "
        f"precision {metrics.get('study_precision', float('nan')):.3f} "
        f"({metrics.get('urgent_studies')} urgent of {metrics.get('studies')} studies)",
        "",
    ]
