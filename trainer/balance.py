"""Balance the training split by oversampling minority classes with augmented copies."""

from __future__ import annotations

import numpy as np

from trainer.augment import augment_uint8
from trainer.data import NUM_CLASSES


def class_counts(labels: np.ndarray) -> list[int]:
    """Images per class 0..2."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=NUM_CLASSES).tolist()


def balance_by_augmentation(
    images: np.ndarray, labels: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Add augmented copies of each minority class until every class matches the largest.

    Only for the training split: validation and test must stay real, untouched scans.
    Copies are drawn round-robin over the class's originals so each is used evenly.
    """
    counts = class_counts(labels)
    if min(counts) == 0:
        missing = [str(label) for label, count in enumerate(counts) if count == 0]
        raise ValueError(f"training split has no images of class {', '.join(missing)}")
    rng = np.random.default_rng(seed)
    target = max(counts)
    extra_images, extra_labels = [], []
    for label, count in enumerate(counts):
        if count == target:
            continue
        members = np.flatnonzero(labels == label)
        picks = np.concatenate(
            [rng.permutation(members) for _ in range(-(-(target - count) // count))]
        )[: target - count]
        extra_images.append(augment_uint8(images[picks], seed=seed + 101 * (label + 1)))
        extra_labels.append(np.full(len(picks), label, dtype=labels.dtype))
    if not extra_images:
        return images.copy(), labels.copy()
    return np.concatenate([images, *extra_images]), np.concatenate([labels, *extra_labels])
