"""Cross-fit the selected recipe on the training and validation patients together.

The candidates are compared on a validation split, so each is trained on 60 % of the patients.
Once a recipe is chosen, the model to publish can learn from more of them without touching the
test split: the training and validation images are dealt into K folds (whole patient groups
when known), one copy of the recipe is trained per fold on the other K-1 folds (balanced by
augmentation, early stopping on its own fold), and the published model averages the K copies'
softmax. Every training and validation image is then predicted once by the copy that did not
learn from it; these out-of-fold probabilities (all the urgent cases of 80 % of the patients,
not 20 %) set the urgent threshold. The test split is scored afterwards, as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from imaging.canonical import to_model_input
from trainer.balance import balance_by_augmentation
from trainer.candidates import NUM_CLASSES, Candidate
from trainer.data import DataError, deal_groups
from trainer.fit import average_models, fit_candidate, predict_proba


@dataclass
class CrossFit:
    """The averaged model, the out-of-fold probabilities of its images, and the histories."""

    model: object
    out_of_fold: np.ndarray
    folds: int
    histories: list[dict[str, list[float]]] = field(default_factory=list)
    seconds: float = 0.0


def fold_of_images(
    labels: np.ndarray, groups: np.ndarray | None, folds: int, seed: int
) -> np.ndarray:
    """The fold (0..folds-1) of every image: stratified by class; groups never span folds."""
    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
    if groups is not None:
        if len(np.unique(groups)) < folds:
            raise DataError(f"{folds} cross-fit folds need at least {folds} patient groups")
        return deal_groups(labels, groups, (1.0,) * folds, seed)
    from sklearn.model_selection import StratifiedKFold

    if np.bincount(labels, minlength=NUM_CLASSES).min() < folds:
        raise DataError(f"{folds} cross-fit folds need at least {folds} images of every class")
    fold = np.zeros(len(labels), dtype=int)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for index, (_, held_out) in enumerate(splitter.split(labels, labels)):
        fold[held_out] = index
    return fold


def cross_fit(
    recipe: list[Candidate],
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None,
    folds: int,
    epochs: int,
    seed: int,
    patience: int = 10,
    progress=None,  # noqa: ANN001 - rich.progress.Progress
) -> CrossFit:
    """Train `recipe` (one candidate, or an ensemble's members) once per fold on uint8 images;
    the averaged model is called `name`."""
    started = time.perf_counter()
    fold = fold_of_images(labels, groups, folds, seed)
    out_of_fold = np.zeros((len(labels), NUM_CLASSES), dtype=np.float32)
    members, histories = [], []
    for index in range(folds):
        held_out, rest = fold == index, fold != index
        if len(np.unique(labels[rest])) < NUM_CLASSES or not held_out.any():
            raise DataError(
                f"cross-fit fold {index + 1} of {folds} leaves a class out of its training part; "
                "use fewer --folds, or --folds 0"
            )
        train_images, train_labels = balance_by_augmentation(
            images[rest], labels[rest], seed + index
        )
        train = (to_model_input(train_images), train_labels)
        original = (to_model_input(images[rest]), labels[rest])  # for class-weighted losses
        val = (to_model_input(images[held_out]), labels[held_out])
        fold_models = []
        for candidate in recipe:
            label = f"{candidate.name} fold {index + 1}/{folds}"
            result = fit_candidate(
                candidate, train, val, epochs, seed + index, progress, patience, label,
                original=original,
            )  # fmt: skip
            result.model.name = f"{candidate.name}_fold{index + 1}"  # unique in the average
            fold_models.append(result.model)
            histories += result.histories
        fold_model = average_models(fold_models, f"fold_{index}")
        out_of_fold[held_out] = predict_proba(fold_model, val[0])
        members += fold_models
    model = average_models(members, f"{name}_x{folds}")
    return CrossFit(model, out_of_fold, folds, histories, time.perf_counter() - started)
