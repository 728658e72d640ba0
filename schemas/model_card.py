"""The model artifact contract: where the trainer publishes and what the worker loads.

A model root holds one directory per published version and a `CURRENT` file naming the
version the workers serve:

    MODEL_ROOT/
      CURRENT                    -> "20261125-223000-ab12cd"
      20261125-223000-ab12cd/
        model.keras              the Keras model: (N, 64, 64, 1) float [0, 1] -> (N, 3) softmax
        card.json                ModelCard below
        card.md, *.png           for people
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, Field

MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
CURRENT_POINTER = "CURRENT"
CLASS_NAMES = ("healthy", "non-urgent", "urgent")
URGENT_CLASS = 2
ClassWeight = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class StudyRule(BaseModel):
    """How a study's slices combine into one decision (chosen by the trainer on out-of-fold
    predictions grouped by patient).

    study P(2) = mean of the `top_k` highest slice P(2) (all slices when fewer); the study is
    urgent when study P(2) >= `threshold`. The study's predicted class is the class predicted
    most often among its slices, with ties to the more serious class, and 2 when urgent.
    """

    top_k: int = Field(ge=1)
    threshold: float = Field(ge=0, le=1)
    description: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)


class EstimateRange(BaseModel):
    """A number expected on new patients: the point estimate and a range (`low`-`high`)."""

    estimate: float
    low: float
    high: float


class ExpectedUnseen(BaseModel):
    """What a fresh set of new patients (about `patients` of them) should show, slice level:
    macro F1 of the predicted class, recall and precision of the urgent flag at the card's
    threshold. `basis` says how it was computed (nested group cross-validation of the whole
    recipe, or a cheaper, not nested, stand-in) and `confidence` the range's coverage."""

    macro_f1: EstimateRange
    urgent_recall: EstimateRange
    urgent_precision: EstimateRange
    basis: str = ""
    nested: bool = False
    confidence: float = 0.9
    patients: int = Field(default=50, description="Size of the fresh set, in `unit`s.")
    unit: str = "patients"
    meets_target: bool | None = Field(
        default=None, description="Whether the low end of urgent recall reaches the target."
    )
    details: dict[str, Any] = Field(default_factory=dict)
    design: str = Field(
        default="", description="The validation design the ranges come from (the pessimistic)."
    )
    study_urgent_flagged: EstimateRange | None = Field(
        default=None, description="Share of urgent studies that reach the worklist."
    )
    study_healthy_flagged: EstimateRange | None = Field(
        default=None, description="Share of healthy studies flagged urgent."
    )
    designs: dict[str, Any] = Field(
        default_factory=dict, description="Every validation design's ranges, by name."
    )
    warnings: list[str] = Field(
        default_factory=list, description="Targets the stated ranges do not reach."
    )


class StudyDecision(BaseModel):
    """One study's verdict: P(2) of the study, the urgent flag, the predicted class, and the
    index (into the slices given) of the most suspicious slice."""

    p2: float
    urgent: bool
    predicted: int
    top_slice: int


class ModelCard(BaseModel):
    """What a worker needs to serve a model, and what a person needs to trust it."""

    version: str
    created_at: str
    classes: list[str] = Field(default_factory=lambda: list(CLASS_NAMES))
    input_shape: list[int] = Field(default_factory=lambda: [64, 64, 1])
    preprocessing: str = (
        "imaging.canonical: grayscale, pad to square with black, Lanczos resize to 64x64, "
        "uint8 / 255 -> float32 in [0, 1]"
    )
    urgent_threshold: float = Field(
        ge=0, le=1, description="Flag urgent when P(class 2) >= this (chosen on held-out scans)."
    )
    urgent_target_recall: float = 0.95
    urgent_threshold_rule: str = Field(default="", description="How the threshold was chosen.")
    class_weights: list[ClassWeight] = Field(
        default_factory=lambda: [1.0] * len(CLASS_NAMES),
        min_length=len(CLASS_NAMES),
        max_length=len(CLASS_NAMES),
        description="The predicted class is the argmax of P x these (chosen on held-out scans); "
        "the urgent flag is the threshold's alone.",
    )
    selected_candidate: str = ""
    published_model: str = Field(default="", description="How the saved model was trained.")
    data_fingerprint: str = ""
    class_counts: dict[str, Any] = Field(default_factory=dict)
    candidates: list[dict[str, Any]] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    training_seconds: float = 0.0
    library_versions: dict[str, str] = Field(default_factory=dict)
    synthetic_data: bool = False
    study_rule: StudyRule | None = Field(
        default=None,
        description="How slices combine into a study decision; None (older cards): the max "
        "slice P(2) against the slice threshold.",
    )
    reference: dict[str, Any] = Field(
        default_factory=dict,
        description="Training distribution a drift monitor can compare with, without labels: "
        "P(urgent) histogram of out-of-fold scans, per-scan mean intensity and contrast, "
        "share flagged urgent.",
    )
    expected_unseen: ExpectedUnseen | None = Field(
        default=None,
        description="The range new patients should show (older cards: None).",
    )

    def predicted_classes(self, probabilities: np.ndarray) -> np.ndarray:
        """The predicted class of each softmax row (N, 3): argmax of P x class_weights."""
        return predicted_classes(probabilities, self.class_weights)

    def is_urgent(self, probabilities: np.ndarray) -> np.ndarray:
        """The urgent flag of each softmax row (N, 3): P(class 2) >= urgent_threshold."""
        return np.asarray(probabilities)[:, URGENT_CLASS] >= self.urgent_threshold

    def decide_study(self, probabilities: np.ndarray) -> StudyDecision:
        """The study decision from its slices' softmax rows (N >= 1, 3), by the card's rule."""
        return decide_study(probabilities, self.class_weights, self.study_rule, self)

    def decide_one_slice_studies(self, probabilities: np.ndarray) -> list[StudyDecision]:
        """`decide_study` for many studies of one slice each (row i: study i's slice), at once.

        With one slice the top-k mean is that slice's P(2), and the vote is its class."""
        probabilities = np.asarray(probabilities, dtype=float)
        if probabilities.ndim != 2 or probabilities.shape[1] != len(CLASS_NAMES):
            raise ValueError(f"softmax rows (N, 3) expected, got {probabilities.shape}")
        p2 = probabilities[:, URGENT_CLASS]
        urgent = p2 >= study_threshold(self.study_rule, self)
        predicted = np.where(urgent, URGENT_CLASS, self.predicted_classes(probabilities))
        return [
            StudyDecision.model_construct(
                p2=float(a), urgent=bool(b), predicted=int(c), top_slice=0
            )
            for a, b, c in zip(p2, urgent, predicted, strict=True)
        ]


def decide_study(
    probabilities: np.ndarray,
    class_weights: list[float],
    rule: StudyRule | None,
    card: ModelCard | None = None,
) -> StudyDecision:
    """Study P(2): mean of the top-k slice P(2) (rule), or the max slice P(2) against the
    slice threshold when there is no rule (`card` gives that threshold)."""
    probabilities = np.asarray(probabilities, dtype=float)
    if (
        probabilities.ndim != 2
        or probabilities.shape[1] != len(CLASS_NAMES)
        or not len(probabilities)
    ):
        raise ValueError(f"a study needs softmax rows (N >= 1, 3), got {probabilities.shape}")
    p2 = probabilities[:, URGENT_CLASS]
    top_slice = int(np.argmax(p2))
    threshold = study_threshold(rule, card)
    if rule is None:
        study_p2 = float(p2[top_slice])
    else:
        study_p2 = float(np.sort(p2)[::-1][: rule.top_k].mean())
    urgent = study_p2 >= threshold
    votes = np.bincount(predicted_classes(probabilities, class_weights), minlength=3)
    predicted = URGENT_CLASS if urgent else int(len(votes) - 1 - np.argmax(votes[::-1]))
    return StudyDecision(p2=study_p2, urgent=bool(urgent), predicted=predicted, top_slice=top_slice)


def study_threshold(rule: StudyRule | None, card: ModelCard | None) -> float:
    """What a study's P(2) is held against: the study rule's threshold, else the card's slice
    threshold."""
    if rule is not None:
        return rule.threshold
    if card is None:
        raise ValueError("without a study rule the card's slice threshold decides")
    return card.urgent_threshold


def predicted_classes(
    probabilities: np.ndarray, class_weights: list[float] | None = None
) -> np.ndarray:
    """Argmax of softmax rows (N, 3), each class's probability times its weight when given."""
    probabilities = np.asarray(probabilities)
    if class_weights is None:
        return probabilities.argmax(axis=1)
    return (probabilities * np.asarray(class_weights, dtype=float)).argmax(axis=1)


class ModelNotFoundError(FileNotFoundError):
    """No usable model under a model root or directory; the message says what to do."""


def read_card(model_dir: str | os.PathLike[str]) -> ModelCard:
    """The card of one published model directory."""
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        raise ModelNotFoundError(
            f"{model_dir}: no {CARD_FILE}; is this a published model directory?"
        )
    return ModelCard.model_validate_json(path.read_text())


def write_card(model_dir: str | os.PathLike[str], card: ModelCard) -> Path:
    path = Path(model_dir) / CARD_FILE
    path.write_text(json.dumps(card.model_dump(mode="json"), indent=2) + "\n")
    return path


def resolve_model_dir(path: str | os.PathLike[str]) -> Path:
    """A model directory, or a model root whose CURRENT pointer names one."""
    path = Path(path).expanduser()
    if (path / MODEL_FILE).is_file():
        return path
    pointer = path / CURRENT_POINTER
    if pointer.is_file():
        version = pointer.read_text().strip()
        target = path / version
        if version and "/" not in version and (target / MODEL_FILE).is_file():
            return target
        raise ModelNotFoundError(f"{pointer} names {version!r}, which holds no {MODEL_FILE}")
    raise ModelNotFoundError(
        f"{path}: no published model (neither {MODEL_FILE} nor a {CURRENT_POINTER} pointer); "
        "run `triage train` first or set TRIAGE_MODEL_DIR"
    )


def set_current(model_root: str | os.PathLike[str], version: str) -> Path:
    """Point the model root's CURRENT at `version`, atomically (workers may be reading it)."""
    root = Path(model_root)
    if not (root / version / MODEL_FILE).is_file():
        raise ModelNotFoundError(
            f"{root / version}: no {MODEL_FILE}; publish it before pointing at it"
        )
    descriptor, temporary = tempfile.mkstemp(dir=root, prefix=".CURRENT.")
    with os.fdopen(descriptor, "w") as handle:
        handle.write(version + "\n")
    os.replace(temporary, root / CURRENT_POINTER)
    return root / CURRENT_POINTER
