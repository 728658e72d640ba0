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
        *_published_markdown(card),
        *_candidates_markdown(card),
        "",
        "## Class counts",
        "",
    ]
    lines += [f"- {stage}: {counts}" for stage, counts in card.class_counts.items()]
    lines += ["", "## Libraries", ""]
    lines += [f"- {name} {version}" for name, version in card.library_versions.items()]
    lines += ["", "Plots: `curves_*.png` (training vs validation), `confusion_*.png`.", ""]
    return "\n".join(lines)


def _summary_markdown(card: ModelCard) -> list[str]:
    """The title and the bullet list: recipe, classes, input, urgent flag, data, timing."""
    return [
        f"# Lung-scan triage model {card.version}",
        "",
        "**Trained on SYNTHETIC phantom scans: not for clinical use.**"
        if card.synthetic_data
        else "",
        f"- Recipe: `{card.selected_candidate}` (its choices are made inside group folds; see "
        "'Expected on new patients')"
        if card.expected_unseen is not None and card.expected_unseen.nested
        else f"- Selected candidate: `{card.selected_candidate}` (highest validation macro F1 "
        "of the compared candidates)",
        f"- Published model: {card.published_model}" if card.published_model else "",
        f"- Classes: {', '.join(f'{i} {name}' for i, name in enumerate(card.classes))}",
        f"- Input: {card.input_shape}; preprocessing: {card.preprocessing}",
        f"- Urgent flag: P(class 2) >= {card.urgent_threshold:.4f}: "
        + (card.urgent_threshold_rule or f"class-2 recall >= {card.urgent_target_recall:.2f}"),
        f"- Predicted class: argmax of P x class weights {card.class_weights} (a weight above "
        "1 for class 1 is chosen on the held-out scans when it raises their macro F1); the "
        "urgent flag above does not depend on it",
        f"- Data fingerprint (sha256 of images + labels): `{card.data_fingerprint}`",
        f"- Training time: {card.training_seconds:.0f} s",
        "",
    ]


def _published_markdown(card: ModelCard) -> list[str]:
    """The published model's table: its validation (or out-of-fold) and test metrics."""
    lines = [
        "## Published model",
        "",
        "| split | macro F1 | accuracy | class-2 recall (predicted) | urgent recall @thr | urgent precision @thr |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    val, test = card.metrics.get("val", {}), card.metrics.get("test", {})
    val_name = "validation (out-of-fold)" if card.metrics.get("folds") else "validation"
    for name, metrics in ((val_name, val), ("test", test)):
        if metrics:
            lines.append(
                f"| {name} | {metrics['macro_f1']:.3f} | {metrics['accuracy']:.3f} | "
                f"{metrics['urgent_recall_argmax']:.3f} | {metrics.get('urgent_recall', 0):.3f} | "
                f"{metrics.get('urgent_precision', 0):.3f} |"
            )
    return lines


def _candidates_markdown(card: ModelCard) -> list[str]:
    """The compared candidates' table (an ensemble's members marked as such)."""
    lines = [
        "",
        "## Candidates",
        "",
        "| candidate | val macro F1 | test macro F1 | test class-2 recall | epochs |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in card.candidates:
        test = row.get("test") or {"macro_f1": float("nan"), "urgent_recall_argmax": float("nan")}
        lines.append(
            f"| {row['name']}{'' if row.get('competes', True) else ' (ensemble member)'} "
            f"| {row['val']['macro_f1']:.3f} | {test['macro_f1']:.3f} | "
            f"{test['urgent_recall_argmax']:.3f} | {row['epochs']} |"
        )
    return lines


def _expected_unseen_markdown(card: ModelCard) -> list[str]:
    """What new patients should show: the ranges, how they were computed, the warning."""
    unseen = card.expected_unseen
    if unseen is None:
        return ["## Expected on new patients", "", "Not estimated.", ""]
    lines = [
        "## Expected on new patients",
        "",
        f"What a fresh set of about {unseen.patients} new "
        f"{unseen.unit} should show "
        f"({unseen.confidence:.0%} range; slice level; at the threshold above):",
        "",
        "| | estimate | low | high |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, label in (
        ("macro_f1", "macro F1 (predicted class)"),
        ("urgent_recall", "urgent recall (flag)"),
        ("urgent_precision", "urgent precision (flag)"),
    ):
        value = getattr(unseen, key)
        lines.append(f"| {label} | {value.estimate:.3f} | {value.low:.3f} | {value.high:.3f} |")
    lines += ["", f"Basis: {unseen.basis}.", ""]
    if unseen.meets_target is False:
        lines += [
            f"**The low end of urgent recall ({unseen.urgent_recall.low:.3f}) is below the "
            f"target ({card.urgent_target_recall}): on these data the threshold rule cannot "
            "promise the target to new patients.**",
            "",
        ]
    if not unseen.nested:
        lines += ["**Not a nested estimate**: see its basis.", ""]
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
