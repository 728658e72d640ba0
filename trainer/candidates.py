"""The CNN candidates: the original problem's two baselines and stronger designs.

The stronger ones aim at unseen patients, not at the validation split: small and regularised
(input average-pooling, dropout, L2, label smoothing), trained on freshly augmented batches
(flip, rotation, zoom, shear, shift, gain/gamma, black bars), and averaged over two designs
(32x32 input-pooled and full 64x64 resolution) rather than over seeds.
BatchNorm + global pooling nets collapsed to one class on the 719 real slices (PITFALLS), so
these keep a flattened head. In group-aware trials on the real slices, on-the-fly
augmentation was what lifted unseen-patient scores over the baselines, while a x2 class-1
loss weight lowered them (TRAINING.md has the every-patient scores). Every model maps float
(N, 64, 64, 1) in [0, 1] to a 3-way softmax and uses only built-in Keras layers, so the worker
loads it without trainer code.
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
    build: Callable[[], object] | None = None  # -> uncompiled keras.Model (None: ensemble)
    augment: bool = False  # on-the-fly augmentation of every training batch
    label_smoothing: float = 0.0
    learning_rate: float = 1e-3
    baseline: bool = False
    combines: tuple[str, ...] = ()  # an ensemble: mean softmax of these trained candidates


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


def _pooled_cnn(widths: tuple[int, ...], input_pool: bool = True) -> object:
    """Small conv blocks with L2, dropout and a small dense head. With `input_pool`, average-pool
    to 32x32 first (drops pixel-level texture that differs between scanners and patients, but
    also shrinks small nodules); without, the same design at full 64x64 resolution."""
    import keras
    from keras import layers, regularizers

    l2 = regularizers.L2(1e-4)
    model = [keras.Input(INPUT_SHAPE)]
    if input_pool:
        model.append(layers.AveragePooling2D(2))
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
    prefix = "pooled" if input_pool else "full"
    return keras.Sequential(model, name=f"{prefix}_cnn_{len(widths)}")


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
            "full3_aug",
            "no input pooling (full 64x64), conv16/32/64 blocks, L2, dropout, label smoothing, "
            "augmented batches",
            lambda: _pooled_cnn((16, 32, 64), input_pool=False),
            augment=True,
            label_smoothing=0.1,
        ),
        Candidate(
            "ens_pooled2_full3",
            "mean softmax of pooled2_aug and full3_aug (two designs; no extra training)",
            combines=("pooled2_aug", "full3_aug"),
        ),
    )
}
QUICK_CANDIDATES = ("baseline_1conv", "baseline_2conv", "pooled2_aug")


def select_candidates(names: list[str] | tuple[str, ...] | None) -> list[Candidate]:
    """The named candidates (all when None), refusing unknown names. An ensemble's members
    come before it (added if not named), so they are trained once and reused."""
    if not names:
        names = list(CANDIDATES)
    unknown = [name for name in names if name not in CANDIDATES]
    if unknown:
        raise ValueError(
            f"unknown candidate(s) {', '.join(unknown)}; choose from {', '.join(CANDIDATES)}"
        )
    ordered: list[str] = []
    for name in names:
        for needed in (*CANDIDATES[name].combines, name):
            if needed not in ordered:
                ordered.append(needed)
    return [CANDIDATES[name] for name in ordered]
