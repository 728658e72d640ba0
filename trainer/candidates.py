"""The candidates, behind one interface: `fit(images, labels, seed, epochs)` trains on uint8
training scans (the balanced training set) and returns a Keras model; `merge` turns the
fold models of a cross-fit into the one model that is published.

- `baseline_1conv`, `baseline_2conv`: the seed's CNNs (plain Adam, no augmentation).
- `residual_mixup`: a small residual net with on-the-fly augmentation, AdamW weight decay and
  mixup: for few patients, many plausible variations of each.
- `gabor_cnn`: a CNN whose first layer starts as a Gabor filter bank, fine-tuned, augmented.
- `hog_conv`: learned convolutions over fixed gradient-histogram cells, augmented.
- `hog_heads`: the fixed cells and a linear head (trainer.hog_heads).
- `ensemble_best`: the mean softmax of the two best others (trainer.pipeline picks them on
  the same out-of-fold scores it selects on).
Which one is published is decided by out-of-fold macro F1 (trainer.pipeline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from trainer import networks
from trainer.fit import Schedule, average_models, train_network

ENSEMBLE = "ensemble_best"
ENSEMBLE_SIZE = 2


@dataclass(frozen=True)
class Candidate:
    """One way to make a model from training scans."""

    name: str
    description: str
    build: Callable[[], object] | None = None  # a Keras network (None: not a trained net)
    schedule: Schedule = field(default_factory=Schedule)
    baseline: bool = False
    fitter: Callable | None = None  # (images, labels, seed) -> keras.Model, for non-networks
    merger: Callable[[list, str], object] = average_models

    def fit(self, images: np.ndarray, labels: np.ndarray, seed: int, epochs: int | None = None):  # noqa: ANN201
        """A Keras model trained on uint8 scans (N, 64, 64) and their labels."""
        from imaging.canonical import to_model_input

        if self.fitter is not None:
            return self.fitter(images, labels, seed)
        schedule = self.schedule if epochs is None else replace(self.schedule, epochs=epochs)
        return train_network(self.build, to_model_input(images), labels, schedule, seed)

    def merge(self, models: list, name: str):  # noqa: ANN201
        """The published model of a cross-fit: its fold models in one."""
        return self.merger(models, name)


def _hog_heads_fitter(images: np.ndarray, labels: np.ndarray, seed: int):  # noqa: ANN202
    from trainer.hog_heads import fit_hog_heads

    return fit_hog_heads(images, labels, seed)


def _hog_heads_merger(models: list, name: str):  # noqa: ANN202
    from trainer.hog_heads import merge_heads

    return merge_heads(models, name)


STRONG = Schedule(epochs=8, learning_rate=1e-3, weight_decay=1e-3, augment=True, mixup=0.2)
CANDIDATES: dict[str, Candidate] = {
    candidate.name: candidate
    for candidate in (
        Candidate(
            "baseline_1conv",
            "the seed's recipe: conv32 + max-pool + dropout + dense128 + softmax",
            lambda: networks.baseline(1),
            Schedule(epochs=8),
            baseline=True,
        ),
        Candidate(
            "baseline_2conv",
            "the seed's recipe with two conv blocks (32, 64)",
            lambda: networks.baseline(2),
            Schedule(epochs=8),
            baseline=True,
        ),
        Candidate(
            "residual_mixup",
            "small residual net (16-32-64), augmented batches, AdamW weight decay, mixup",
            networks.residual_net,
            STRONG,
        ),
        Candidate(
            "gabor_cnn",
            "first 5x5 layer initialised as a Gabor bank and fine-tuned, conv32/64, augmented, "
            "weight decay",
            networks.gabor_net,
            replace(STRONG, mixup=0.0),
        ),
        Candidate(
            "hog_conv",
            "learned 3x3 convs over fixed 8x8 gradient-histogram cells + intensity histogram, "
            "augmented, weight decay",
            networks.hog_conv_net,
            replace(STRONG, mixup=0.0, learning_rate=3e-3),
        ),
        Candidate(
            "hog_heads",
            "fixed gradient-histogram cells + intensity histogram, one linear head per fold "
            "(scikit-learn), jittered and barred copies",
            fitter=_hog_heads_fitter,
            merger=_hog_heads_merger,
        ),
    )
}
DEFAULT_CANDIDATES = (*CANDIDATES, ENSEMBLE)


def select_candidates(names: list[str] | tuple[str, ...] | None) -> tuple[list[Candidate], bool]:
    """The named candidates (the default set when None) and whether the ensemble of the best
    competes too; unknown names are refused."""
    names = list(names) if names else list(DEFAULT_CANDIDATES)
    unknown = [name for name in names if name not in CANDIDATES and name != ENSEMBLE]
    if unknown:
        raise ValueError(
            f"unknown candidate(s) {', '.join(unknown)}; choose from "
            f"{', '.join(DEFAULT_CANDIDATES)}"
        )
    chosen = [CANDIDATES[name] for name in names if name != ENSEMBLE]
    ensemble = ENSEMBLE in names
    if ensemble and len(chosen) < ENSEMBLE_SIZE:
        raise ValueError(f"{ENSEMBLE} needs at least {ENSEMBLE_SIZE} other candidates")
    return chosen, ensemble
