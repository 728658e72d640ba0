"""Cross-fitting: every candidate trained on the other folds of the patients, once per fold.

The scans are dealt into folds by patient group (trainer.data.deal_groups). `FoldFits` trains
a candidate on the scans outside a set of folds, on the balanced training set of just those
scans (trainer.balance: only training scans are ever copied), and keeps the model: the
published pipeline needs the models without one fold each, the nested estimate the models
without two folds each (the fit without folds {i, j} serves the estimate of both i and j).
`cross_fit` returns a candidate's out-of-fold scores and its merged fold models.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from imaging.canonical import to_model_input
from trainer.balance import balance_by_augmentation, class_counts
from trainer.candidates import Candidate
from trainer.data import DataError
from trainer.fit import predict_proba
from trainer.networks import NUM_CLASSES


@dataclass
class CrossFitted:
    """A candidate's out-of-fold softmax over some folds, and how to build its model."""

    name: str
    description: str
    out_of_fold: np.ndarray  # rows of the scans in the folds it covers
    build_model: Callable[[], object]  # the fold models merged (what is published)
    seconds: float = 0.0
    baseline: bool = False


@dataclass
class FoldFits:
    """Models of candidates trained without given folds, trained once each."""

    images: np.ndarray  # uint8 (N, 64, 64)
    labels: np.ndarray
    fold: np.ndarray  # fold of every scan
    seed: int = 0
    epochs: int | None = None  # None: each candidate's own schedule
    progress: Callable[[str], None] | None = None
    counts: dict[str, list[int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    _models: dict = field(default_factory=dict)

    @property
    def folds(self) -> list[int]:
        return sorted(int(f) for f in np.unique(self.fold))

    def without(self, candidate: Candidate, excluded: frozenset[int]):  # noqa: ANN201
        """`candidate` trained on the balanced scans of every fold not in `excluded`."""
        key = (candidate.name, excluded)
        if key not in self._models:
            started = time.perf_counter()
            rest = ~np.isin(self.fold, list(excluded))
            if len(np.unique(self.labels[rest])) < NUM_CLASSES:
                raise DataError(
                    f"the scans outside fold(s) {sorted(excluded)} lack a class: use fewer folds"
                )
            seed = self.seed + 97 * sum(2**f for f in excluded)
            images, labels = balance_by_augmentation(self.images[rest], self.labels[rest], seed)
            name = "without fold(s) " + ",".join(str(f + 1) for f in sorted(excluded))
            self.counts[f"{name}: training scans"] = class_counts(self.labels[rest])
            self.counts[f"{name}: balanced"] = class_counts(labels)
            if self.progress is not None:
                self.progress(f"{candidate.name} {name}")
            self._models[key] = candidate.fit(images, labels, seed, self.epochs)
            self.seconds[candidate.name] = self.seconds.get(candidate.name, 0.0) + (
                time.perf_counter() - started
            )
        return self._models[key]


def cross_fit(fits: FoldFits, candidate: Candidate, covered: list[int]) -> CrossFitted:
    """Out-of-fold scores of `candidate` on the scans of the `covered` folds, each scored by
    the model trained on the other covered folds (folds outside `covered` are never used)."""
    started = time.perf_counter()
    if len(covered) < 2:
        raise DataError(f"cross-fitting needs at least 2 folds, got {len(covered)}")
    outside = frozenset(fits.folds) - frozenset(covered)
    inside = np.isin(fits.fold, covered)
    out_of_fold = np.zeros((int(inside.sum()), NUM_CLASSES), np.float32)
    position = np.cumsum(inside) - 1
    models = []
    for fold in covered:
        model = fits.without(candidate, outside | {fold})
        held = fits.fold == fold
        out_of_fold[position[held]] = predict_proba(model, to_model_input(fits.images[held]))
        models.append(model)
    name = f"{candidate.name}_x{len(models)}"
    return CrossFitted(
        candidate.name, candidate.description, out_of_fold,
        lambda: candidate.merge(models, name),
        time.perf_counter() - started, candidate.baseline,
    )  # fmt: skip


def ensemble(members: list[CrossFitted], name: str) -> CrossFitted:
    """The mean softmax of cross-fitted candidates (no further training)."""
    from trainer.fit import average_models

    return CrossFitted(
        name,
        "mean softmax of " + " and ".join(m.name for m in members),
        np.mean([m.out_of_fold for m in members], axis=0),
        lambda: average_models([m.build_model() for m in members], name),
        sum(m.seconds for m in members),
    )


def fold_of_scans(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of every scan: whole groups, stratified by class."""
    from trainer.data import deal_groups

    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
    if len(np.unique(groups)) < folds:
        raise DataError(f"{folds} folds need at least {folds} patient groups")
    return deal_groups(labels, groups, (1.0,) * folds, seed)
