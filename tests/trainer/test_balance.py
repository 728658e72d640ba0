from __future__ import annotations

import numpy as np

from trainer.balance import balance_by_augmentation, class_counts


def test_balancing_equalises_counts_and_keeps_originals(phantoms) -> None:
    images, labels = phantoms
    train_images, train_labels = images[:150], labels[:150]
    before = class_counts(train_labels)
    balanced_images, balanced_labels = balance_by_augmentation(train_images, train_labels, seed=1)
    after = class_counts(balanced_labels)
    assert after == [max(before)] * 3
    assert np.array_equal(balanced_images[:150], train_images)
    assert balanced_images.dtype == np.uint8 and balanced_images.shape[1:] == (64, 64)
    copies = balanced_images[150:]
    assert not any(
        np.array_equal(copy, original) for copy in copies[:20] for original in train_images
    )


def test_balancing_touches_only_the_split_it_is_given(phantoms) -> None:
    images, labels = phantoms
    val_images, val_labels = images[150:].copy(), labels[150:].copy()
    balance_by_augmentation(images[:150], labels[:150], seed=2)
    assert np.array_equal(images[150:], val_images) and np.array_equal(labels[150:], val_labels)


def test_balancing_is_reproducible(phantoms) -> None:
    images, labels = phantoms
    first = balance_by_augmentation(images[:90], labels[:90], seed=4)
    again = balance_by_augmentation(images[:90], labels[:90], seed=4)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])


def test_a_missing_class_is_refused(phantoms) -> None:
    import pytest

    images, labels = phantoms
    keep = labels != 1
    with pytest.raises(ValueError, match="no images of class 1"):
        balance_by_augmentation(images[keep], labels[keep])
