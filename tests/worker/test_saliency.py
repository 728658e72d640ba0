"""Occlusion saliency with toy probability functions whose P(2) depends on one region.
(worker/saliency.py; here because this helper's brief keeps its tests in this folder.)"""

from __future__ import annotations

import numpy as np
import pytest

from worker.saliency import occlusion_map

REGION = np.s_[40:48, 12:20]


def region_model(batch: np.ndarray) -> np.ndarray:
    """P(2) = brightness of REGION: occluding it with the (darker) mean lowers P(2)."""
    p2 = batch[:, 40:48, 12:20].astype(float).mean(axis=(1, 2)) / 255.0
    rest = (1 - p2) / 2
    return np.stack([rest, rest, p2], axis=1)


def scan_with_bright_region() -> np.ndarray:
    rng = np.random.default_rng(0)
    scan = rng.integers(20, 60, (64, 64)).astype(np.uint8)
    scan[REGION] = 230
    return scan


def test_the_map_peaks_on_the_region_the_model_reads() -> None:
    calls: list[int] = []

    def counted(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return region_model(batch)

    heat = occlusion_map(counted, scan_with_bright_region())
    assert calls == [1 + 15 * 15]  # the slice and every occluded copy, in one batch
    assert heat.shape == (64, 64) and heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    assert 40 <= peak[0] < 48 and 12 <= peak[1] < 20
    assert heat[REGION].mean() > 0.5
    far = np.ones((64, 64), bool)
    far[32:56, 4:28] = False
    assert heat[far].max() == 0  # squares that never touch the region change nothing


def test_a_model_that_ignores_the_scan_gives_zeros() -> None:
    flat = occlusion_map(lambda b: np.tile([0.2, 0.3, 0.5], (len(b), 1)), scan_with_bright_region())
    assert np.all(flat == 0)


def test_odd_patch_and_stride_cover_every_pixel() -> None:
    scan = scan_with_bright_region()
    scan[60:, 60:] = 250  # the last rows and columns, off the stride grid

    def corner_model(batch: np.ndarray) -> np.ndarray:
        p2 = batch[:, 60:, 60:].astype(float).mean(axis=(1, 2)) / 255.0
        return np.stack([1 - p2, np.zeros_like(p2), p2], axis=1)

    heat = occlusion_map(corner_model, scan, patch=7, stride=5)
    assert heat[63, 63] == pytest.approx(1.0)


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        occlusion_map(region_model, np.zeros((64, 64), np.float32))
    with pytest.raises(ValueError):
        occlusion_map(lambda b: np.zeros((len(b), 2)), scan_with_bright_region())
