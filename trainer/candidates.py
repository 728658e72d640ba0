"""The CNN candidates: the original problem's two baselines and stronger designs.

The stronger ones aim at unseen patients, not at the validation split: small and regularised
(input average-pooling, dropout, L2, label smoothing), trained on freshly augmented batches
(flip, rotation, zoom, shear, shift, gain/gamma, black bars), and averaged over seeds.
BatchNorm + global pooling nets collapsed to one class on the 719 real slices (PITFALLS), so
these keep a flattened head. In group-aware trials on the real slices, on-the-fly
augmentation was what lifted unseen-patient scores over the baselines. Every model maps float (N, 64, 64, 1) in [0, 1] to a 3-way softmax
and uses only built-in Keras layers, so the worker loads it without trainer code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

INPUT_SHAPE = (64, 64, 1)
NUM_CLASSES = 3


@dataclass(frozen=True)
class Candidate:
    """How to build and train one candidate."""

    name: str
    description: str
    build: Callable[[], object]  # -> uncompiled keras.Model
    augment: bool = False  # on-the-fly augmentation of every training batch
    label_smoothing: float = 0.0
    learning_rate: float = 1e-3
    members: int = 1  # >1: average the softmax of this many seeds
    baseline: bool = False


def _baseline(conv_blocks: int) -> object:
    import keras
    from keras import layers

    model = [keras.Input(INPUT_SHAPE)]
    for block in range(conv_blocks):
        model += [layers.Conv2D(32 * 2**block, 3, activation="relu"), layers.MaxPooling2D()]
    model += [
        layers.Dropout(0.25),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.5),
        layers.Dense(NUM_CLASSES, activation="softmax"),
    ]
    return keras.Sequential(model, name=f"baseline_{conv_blocks}conv")


def _pooled_cnn(widths: tuple[int, ...]) -> object:
    """Average-pool to 32x32 first (drops pixel-level texture that differs between scanners
    and patients), then small conv blocks with L2, dropout and a small dense head."""
    import keras
    from keras import layers, regularizers

    l2 = regularizers.L2(1e-4)
    model = [keras.Input(INPUT_SHAPE), layers.AveragePooling2D(2)]
    for width in widths:
        model += [
            layers.Conv2D(width, 3, padding="same", activation="relu", kernel_regularizer=l2),
            layers.MaxPooling2D(),
        ]
    model += [
        layers.Dropout(0.4),
        layers.Flatten(),
        layers.Dense(64, activation="relu", kernel_regularizer=l2),
        layers.Dropout(0.5),
        layers.Dense(NUM_CLASSES, activation="softmax"),
    ]
    return keras.Sequential(model, name=f"pooled_cnn_{len(widths)}")


CANDIDATES: dict[str, Candidate] = {
    candidate.name: candidate
    for candidate in (
        Candidate(
            "baseline_1conv",
            "original recipe: conv32 + max-pool + dropout + dense128 + softmax",
            lambda: _baseline(1),
            baseline=True,
        ),
        Candidate(
            "baseline_2conv",
            "original recipe with two conv blocks (32, 64)",
            lambda: _baseline(2),
            baseline=True,
        ),
        Candidate(
            "pooled2_aug",
            "avg-pool to 32x32, conv32/conv64 blocks, L2, dropout, label smoothing, "
            "augmented batches",
            lambda: _pooled_cnn((32, 64)),
            augment=True,
            label_smoothing=0.1,
        ),
        Candidate(
            "pooled3_aug",
            "as pooled2_aug with three conv blocks (16/32/64)",
            lambda: _pooled_cnn((16, 32, 64)),
            augment=True,
            label_smoothing=0.1,
        ),
        Candidate(
            "pooled2_aug_x3",
            "pooled2_aug averaged over 3 seeds (one model, mean softmax)",
            lambda: _pooled_cnn((32, 64)),
            augment=True,
            label_smoothing=0.1,
            members=3,
        ),
    )
}
QUICK_CANDIDATES = ("baseline_1conv", "baseline_2conv", "pooled2_aug")


def select_candidates(names: list[str] | tuple[str, ...] | None) -> list[Candidate]:
    """The named candidates (all when None), refusing unknown names."""
    if not names:
        return list(CANDIDATES.values())
    unknown = [name for name in names if name not in CANDIDATES]
    if unknown:
        raise ValueError(
            f"unknown candidate(s) {', '.join(unknown)}; choose from {', '.join(CANDIDATES)}"
        )
    return [CANDIDATES[name] for name in names]
