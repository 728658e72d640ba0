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


def test_balancing_leaves_the_arrays_it_is_given_unchanged(phantoms) -> None:
    images, labels = phantoms
    train_images, train_labels = images[:150].copy(), labels[:150].copy()
    given_images, given_labels = train_images.copy(), train_labels.copy()
    balanced, balanced_labels = balance_by_augmentation(train_images, train_labels, seed=2)
    assert np.array_equal(train_images, given_images)
    assert np.array_equal(train_labels, given_labels)
    # the output is the given scans, then copies of the minority classes only
    assert np.array_equal(balanced[:150], given_images)
    counts = class_counts(given_labels)
    added = class_counts(balanced_labels[150:])
    assert added == [max(counts) - count for count in counts]


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
