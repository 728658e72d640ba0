"""Augmentation changes only what varies between sites and patients."""

from __future__ import annotations

import numpy as np

from trainer.augment import augment_uint8, barred, jittered, site_variations


def test_site_variations_change_grey_levels_not_anatomy(phantoms) -> None:  # noqa: ANN001
    images = phantoms[0][:20]
    varied = site_variations(images, seed=0)
    assert varied.shape == images.shape and varied.dtype == np.uint8
    assert not np.array_equal(varied, images)
    for original, copy in zip(images, varied, strict=True):  # same structure, other window
        assert np.corrcoef(original.ravel(), copy.ravel())[0, 1] > 0.9


def test_copies_keep_shape_and_bars_are_black(phantoms) -> None:  # noqa: ANN001
    images = phantoms[0][:10]
    assert augment_uint8(images, seed=1).shape == images.shape
    assert jittered(images, seed=1).shape == images.shape
    bars = barred(images, seed=1)
    assert (bars[:, :2] == 0).all() and (bars[:, -2:] == 0).all()
