"""Publish a trained model as a versioned directory and point CURRENT at it."""

from __future__ import annotations

import os
import platform
import shutil
import time
from pathlib import Path

from schemas.model_card import MODEL_FILE, ModelCard, set_current, write_card


def new_version(fingerprint: str) -> str:
    """A sortable version name: UTC time plus the data fingerprint's first characters."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{fingerprint[:6]}"


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
    test = card.metrics.get("test", {})
    val = card.metrics.get("val", {})
    lines = [
        f"# Lung-scan triage model {card.version}",
        "",
        "**Trained on SYNTHETIC phantom scans: not for clinical use.**"
        if card.synthetic_data
        else "",
        f"- Selected candidate: `{card.selected_candidate}` (highest validation macro F1 of the "
        "compared candidates)",
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
        "## Published model",
        "",
        "| split | macro F1 | accuracy | class-2 recall (predicted) | urgent recall @thr | urgent precision @thr |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    val_name = "validation (out-of-fold)" if card.metrics.get("folds") else "validation"
    for name, metrics in ((val_name, val), ("test", test)):
        if metrics:
            lines.append(
                f"| {name} | {metrics['macro_f1']:.3f} | {metrics['accuracy']:.3f} | "
                f"{metrics['urgent_recall_argmax']:.3f} | {metrics.get('urgent_recall', 0):.3f} | "
                f"{metrics.get('urgent_precision', 0):.3f} |"
            )
    lines += [
        "",
        "## Candidates",
        "",
        "| candidate | val macro F1 | test macro F1 | test class-2 recall | epochs |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in card.candidates:
        lines.append(
            f"| {row['name']}{'' if row.get('competes', True) else ' (ensemble member)'} "
            f"| {row['val']['macro_f1']:.3f} | {row['test']['macro_f1']:.3f} | "
            f"{row['test']['urgent_recall_argmax']:.3f} | {row['epochs']} |"
        )
    lines += ["", "## Class counts", ""]
    lines += [f"- {stage}: {counts}" for stage, counts in card.class_counts.items()]
    lines += ["", "## Libraries", ""]
    lines += [f"- {name} {version}" for name, version in card.library_versions.items()]
    lines += ["", "Plots: `curves_*.png` (training vs validation), `confusion_*.png`.", ""]
    return "\n".join(lines)
