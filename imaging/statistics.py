"""What a drift monitor watches in the scans themselves, without labels: per-scan mean
intensity and contrast (the standard deviation of the grey levels), both on the canonical
0-255 scale. The trainer states them for its training scans on the model card (`reference`),
the worker for every scan it classifies; one definition, so the two are comparable."""

from __future__ import annotations

import numpy as np


def input_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per scan of `images` (N, H, W), grey levels 0-255: (mean intensity, contrast), each (N,)."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[0] == 0 or images.shape[1] * images.shape[2] == 0:
        raise ValueError(
            f"input statistics need a non-empty stack of scans (N, H, W); got shape {images.shape}"
        )
    pixels = images.reshape(len(images), -1).astype(np.float64)
    return pixels.mean(axis=1), pixels.std(axis=1)
