"""The one definition of per-scan input statistics the trainer's card and the worker share."""

from __future__ import annotations

import numpy as np
import pytest

from imaging.statistics import input_statistics


def test_mean_intensity_and_contrast_per_scan() -> None:
    flat = np.full((64, 64), 80, np.uint8)
    halves = np.zeros((64, 64), np.uint8)
    halves[32:] = 200
    means, contrasts = input_statistics(np.stack([flat, halves]))
    assert means.tolist() == [80.0, 100.0]
    assert contrasts.tolist() == [0.0, 100.0]  # half 0, half 200: 100 either side of the mean


@pytest.mark.parametrize("shape", [(0, 64, 64), (64, 64), (2, 0, 64)])
def test_anything_but_a_stack_of_scans_is_refused_naming_its_shape(shape: tuple) -> None:
    with pytest.raises(ValueError, match=rf"got shape \({shape[0]}"):
        input_statistics(np.zeros(shape, np.uint8))
