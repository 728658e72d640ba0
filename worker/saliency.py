"""Occlusion saliency: where on a slice the urgent class's probability depends.

Each `patch` x `patch` square (on a `stride` grid that also reaches the last row and column)
is set to the slice's mean grey; the drop in P(class 2) it causes is spread over the pixels it
covered, averaged per pixel over the squares covering it, and the map is scaled to [0, 1] by
its maximum. A rise in P(2) counts as no drop. One call of `model_probabilities` classifies
the slice and every occluded copy together (226 scans for 64x64, patch 8, stride 4), so the
cost is one forward pass. A slice whose P(2) no square lowers gets an all-zero map.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from schemas.model_card import URGENT_CLASS

SIZE = 64


def _starts(size: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def occlusion_map(
    model_probabilities: Callable[[np.ndarray], np.ndarray],
    scan: np.ndarray,
    patch: int = 8,
    stride: int = 4,
) -> np.ndarray:
    """Saliency of P(class 2) over one canonical scan: float (64, 64) in [0, 1]."""
    scan = np.asarray(scan)
    if scan.shape != (SIZE, SIZE) or scan.dtype != np.uint8:
        raise ValueError(f"scan must be uint8 ({SIZE}, {SIZE}), got {scan.dtype} {scan.shape}")
    if not 1 <= patch <= SIZE or stride < 1:
        raise ValueError("patch must be within 1..64 and stride at least 1")
    fill = np.uint8(np.clip(np.rint(scan.mean()), 0, 255))
    squares = [(r, c) for r in _starts(SIZE, patch, stride) for c in _starts(SIZE, patch, stride)]
    batch = np.repeat(scan[None], len(squares) + 1, axis=0)
    for index, (row, col) in enumerate(squares, start=1):
        batch[index, row : row + patch, col : col + patch] = fill
    probabilities = np.asarray(model_probabilities(batch), dtype=np.float64)
    if probabilities.shape != (len(batch), 3):
        raise ValueError(f"model_probabilities returned {probabilities.shape}, expected (N, 3)")
    drops = np.clip(probabilities[0, URGENT_CLASS] - probabilities[1:, URGENT_CLASS], 0, None)
    total = np.zeros((SIZE, SIZE))
    covered = np.zeros((SIZE, SIZE))
    for drop, (row, col) in zip(drops, squares, strict=True):
        total[row : row + patch, col : col + patch] += drop
        covered[row : row + patch, col : col + patch] += 1
    heat = total / np.maximum(covered, 1)
    peak = heat.max()
    if not np.isfinite(peak) or peak <= 0:
        return np.zeros((SIZE, SIZE))
    return heat / peak
